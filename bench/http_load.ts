import { Pool } from 'undici'

export interface LoadResult {
  requests: number
  errors: number
  seconds: number
  rps: number
  p50ms: number
  p99ms: number
  /** First non-2xx body seen, to explain errors. */
  firstError?: string
}

/**
 * A connection's own state across its requests (a pilot renewing its current token): `body()` builds the
 * next request, `answer()` sees its response. load() gives each worker its own session.
 */
export interface LoadSession {
  body(): string
  answer(status: number, text: string): void
}

/**
 * Closed-loop load: `connections` workers, each sending the next request as soon as the previous
 * answer arrives, for `durationMs`. Latencies are measured per request. Loopback only.
 */
export async function load(options: {
  origin: string
  path: string
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  connections: number
  durationMs: number
  ca?: string | Buffer
  /** Per-worker state instead of one fixed body; worker i uses sessions[i], so give `connections` of them. */
  sessions?: LoadSession[]
}): Promise<LoadResult> {
  const url = new URL(options.origin)
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) throw new Error('load tests target loopback only')
  const pool = new Pool(options.origin, { connections: options.connections, pipelining: 1, ...(options.ca ? { connect: { ca: options.ca } } : {}) })
  const latencies: number[] = []
  let errors = 0
  let firstError: string | undefined
  if (options.sessions && options.sessions.length < options.connections) throw new Error('give one session per connection')
  const send = async (session?: LoadSession) => {
    const t0 = performance.now()
    const res = await pool.request({ path: options.path, method: options.method ?? 'GET', headers: options.headers ?? {}, body: session ? session.body() : options.body ?? null })
    const text = await res.body.text()
    latencies.push(performance.now() - t0)
    session?.answer(res.statusCode, text)
    if (res.statusCode >= 300) {
      errors++
      firstError ??= `${res.statusCode} ${text.slice(0, 200)}`
    }
  }
  // Warm-up: connections, JIT, the verified-subject cache.
  // A session's requests are sequential (each needs the previous answer): four each, one after another.
  if (options.sessions) await Promise.all(options.sessions.slice(0, options.connections).map(async (s) => { for (let i = 0; i < 4; i++) await send(s) }))
  else await Promise.all(Array.from({ length: options.connections * 4 }, () => send()))
  latencies.length = 0
  errors = 0
  const start = performance.now()
  const end = start + options.durationMs
  await Promise.all(Array.from({ length: options.connections }, async (_, i) => {
    while (performance.now() < end) await send(options.sessions?.[i])
  }))
  const seconds = (performance.now() - start) / 1000
  await pool.close()
  latencies.sort((a, b) => a - b)
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN
  return {
    requests: latencies.length, errors, seconds, rps: Math.round(latencies.length / seconds),
    p50ms: Number(q(0.5).toFixed(2)), p99ms: Number(q(0.99).toFixed(2)), ...(firstError ? { firstError } : {}),
  }
}
