import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'

/** One token-endpoint request as IAM saw it, and the refresh token IAM answered with, if any. */
export interface SeenTokenRequest {
  grantType: string
  scope: string | undefined
  status: number
  refreshToken?: string
}

export interface IamProxy {
  /** The broker's `discovery_url`: the development IAM's document with every endpoint pointing here. */
  discoveryUrl: string
  /** Every request to the token endpoint, in order. */
  tokenRequests: SeenTokenRequest[]
  /** Closes the port: the broker's next IAM call is refused, as when IAM is down. */
  down(): Promise<void>
  /** Opens the same port again. */
  up(): Promise<void>
  close(): Promise<void>
}

/**
 * The broker's way to a development IAM, through a plain HTTP relay on loopback that the test can close
 * and reopen (an IAM outage, while the IAM keeps its tokens and keys) and that records what reaches the
 * token endpoint (how many refreshes IAM served, which refresh tokens it handed out). The discovery
 * document is relayed with its endpoints rewritten to the relay; `issuer` is left alone, so the broker
 * still compares tokens' `iss` with the IAM's own.
 */
export async function startIamProxy(iam: RunningDevIam): Promise<IamProxy> {
  const tokenRequests: SeenTokenRequest[] = []
  const upstream = iam.issuer.replace(/\/$/, '')
  let base = ''
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const body = Buffer.concat(chunks)
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !['host', 'connection', 'content-length'].includes(k)) headers[k] = v
    try {
      const up = await fetch(`${upstream}${req.url}`, { method: req.method ?? 'GET', headers, ...(body.length ? { body } : {}), redirect: 'manual' })
      let text = await up.text()
      const path = new URL(req.url ?? '/', 'http://x').pathname
      if (path === '/.well-known/openid-configuration' && up.status === 200) {
        const doc = JSON.parse(text) as Record<string, unknown>
        for (const [k, v] of Object.entries(doc)) if (k !== 'issuer' && typeof v === 'string' && v.startsWith(iam.issuer)) doc[k] = `${base}/${v.slice(iam.issuer.length)}`
        text = JSON.stringify(doc)
      }
      if (path === '/token') {
        const form = new URLSearchParams(body.toString('utf8'))
        let refreshToken: string | undefined
        try { refreshToken = (JSON.parse(text) as { refresh_token?: string }).refresh_token } catch { refreshToken = undefined }
        tokenRequests.push({ grantType: form.get('grant_type') ?? '', scope: form.get('scope') ?? undefined, status: up.status, ...(refreshToken ? { refreshToken } : {}) })
      }
      const out: Record<string, string> = {}
      up.headers.forEach((v, k) => { if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection', 'keep-alive'].includes(k)) out[k] = v })
      res.writeHead(up.status, out)
      res.end(text)
    } catch {
      res.writeHead(502)
      res.end()
    }
  })
  const listen = (port: number) => new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() }) })
  await listen(0)
  const port = (server.address() as AddressInfo).port
  base = `http://127.0.0.1:${port}`
  const down = () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() })
  return {
    discoveryUrl: `${base}/.well-known/openid-configuration`,
    tokenRequests,
    down,
    up: () => listen(port),
    close: async () => { if (server.listening) await down() },
  }
}
