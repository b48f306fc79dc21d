import { readFileSync } from 'node:fs'
import { Agent } from 'undici'

/**
 * An undici dispatcher for the clients that talk to the broker: HTTPS verified against the PEM bundle in
 * `caFile` when given (a site CA the system store does not hold), else the system store. A timeout left
 * out keeps undici's default.
 */
export function caAgent(caFile: string | undefined, t: { connectMs: number; headersMs?: number; bodyMs?: number }): Agent {
  return new Agent({
    connect: { ...(caFile ? { ca: readFileSync(caFile) } : {}), timeout: t.connectMs },
    ...(t.headersMs !== undefined ? { headersTimeout: t.headersMs } : {}),
    ...(t.bodyMs !== undefined ? { bodyTimeout: t.bodyMs } : {}),
  })
}
