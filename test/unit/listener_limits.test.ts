import { EventEmitter } from 'node:events'
import type { Server } from 'node:http'
import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { applyListenerLimits, ListenerLimitsSchema } from '../../src/http/listener_limits.ts'
import { addressKeyer } from '../../src/ratelimit/address_key.ts'

/** A connection as the 'connection' event hands it over: an address, destroy(), and 'close'. */
function fakeSocket(remoteAddress: string): EventEmitter & { remoteAddress: string; destroyed: boolean; destroy(): void } {
  const s = Object.assign(new EventEmitter(), {
    remoteAddress,
    destroyed: false,
    destroy() { s.destroyed = true; s.emit('close') },
  })
  return s
}

describe('the per-client connection limit', () => {
  // RFC 6177: an IPv6 end site gets at least a /64, so one host can open each connection from a new
  // address in it. Counted per exact address, 2001:db8::1, ::2, ::3 would each be a "client" of their own
  // and one host could take every one of max_connections.
  it('counts the addresses of one IPv6 /64 as one client', () => {
    const server = createServer()
    applyListenerLimits(server as unknown as Server, ListenerLimitsSchema.parse({ max_connections_per_client: 2 }), addressKeyer(64))
    const sockets = ['2001:db8::1', '2001:db8::2', '2001:db8::3', '2001:db8:0:1::1'].map((a) => {
      const s = fakeSocket(a)
      server.emit('connection', s)
      return s
    })
    expect(sockets.map((s) => s.destroyed)).toEqual([false, false, true, false])
    sockets[0]!.destroy()
    const again = fakeSocket('2001:db8::ffff')
    server.emit('connection', again)
    expect(again.destroyed).toBe(false)
  })

  it('counts IPv4 clients by their address, a mapped one as the IPv4 address it carries', () => {
    const server = createServer()
    applyListenerLimits(server as unknown as Server, ListenerLimitsSchema.parse({ max_connections_per_client: 1 }), addressKeyer(64))
    const sockets = ['192.0.2.7', '::ffff:192.0.2.7', '192.0.2.8'].map((a) => {
      const s = fakeSocket(a)
      server.emit('connection', s)
      return s
    })
    expect(sockets.map((s) => s.destroyed)).toEqual([false, true, false])
  })
})
