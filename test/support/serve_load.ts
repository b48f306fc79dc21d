import { request } from 'node:https'

/** What became of one request sent to a `serve` process that may be stopping. */
export type Outcome =
  | { kind: 'complete'; status: number; text: string; endedAt: number }
  /** The connection was refused, or closed before its TLS handshake finished: the listener had closed. */
  | { kind: 'refused' }
  /** The connection was up and the request sent, then cut before its response was complete. */
  | { kind: 'reset'; error: string }

/** One POST on its own connection, so every outcome belongs to exactly one request. */
export function postOnce(url: string, body: string, ca: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    let connected = false
    const req = request(url, { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeout: 20_000 }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ kind: 'complete', status: res.statusCode ?? 0, text, endedAt: Date.now() }))
      res.on('error', (err) => resolve({ kind: 'reset', error: err.message }))
      res.on('aborted', () => resolve({ kind: 'reset', error: 'aborted' }))
    })
    req.on('socket', (s) => s.once('secureConnect', () => { connected = true }))
    req.on('error', (err) => resolve(connected ? { kind: 'reset', error: err.message } : { kind: 'refused' }))
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end(body)
  })
}

/**
 * `clients` clients each POSTing `body` one request after another (at most 2,000 each) until told to stop
 * or until the listener closes on them. Resolves once `warm` requests have completed (or after 10 s).
 */
export async function loadUntilStopped(url: string, body: string, ca: Buffer, clients: number, warm: number): Promise<{ outcomes: Outcome[]; stop: () => Promise<void> }> {
  const outcomes: Outcome[] = []
  let stopped = false
  const client = async () => {
    for (let i = 0; i < 2000 && !stopped; i++) {
      const o = await postOnce(url, body, ca)
      outcomes.push(o)
      if (o.kind !== 'complete') return // the listener is closed: this client goes away
    }
  }
  const load = Promise.all(Array.from({ length: clients }, client))
  const completed = () => outcomes.filter((o) => o.kind === 'complete').length
  for (let i = 0; i < 400 && completed() < warm; i++) await new Promise((r) => setTimeout(r, 25))
  return { outcomes, stop: async () => { stopped = true; await load } }
}
