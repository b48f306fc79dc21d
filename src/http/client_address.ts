import { getConnInfo } from '@hono/node-server/conninfo'
import type { Context } from 'hono'

/** The peer address for audit records; absent under app.request() (tests), which has no socket. */
export function clientAddress(c: Context): { clientAddress?: string } {
  try {
    const a = getConnInfo(c).remote.address
    return a ? { clientAddress: a } : {}
  } catch {
    return {}
  }
}
