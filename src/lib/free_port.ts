import { createServer, type AddressInfo } from 'node:net'

/**
 * A TCP port free on `host` right now, for a server whose URL must be known before it listens (an
 * issuer naming its own port). The port is released before returning, so another process could take it
 * first: development, tests and benchmarks only.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, host, () => {
      const { port } = probe.address() as AddressInfo
      probe.close(() => resolve(port))
    })
  })
}
