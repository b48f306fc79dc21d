import { execFileSync } from 'node:child_process'

/** Fails (never skips) when an interop peer is missing, naming the Debian package to install. */
export function requireTool(command: string, debianPackage: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error(`${command} not found: install the Debian package ${debianPackage} (apt-get install ${debianPackage})`)
  }
}

/** A free TCP port on loopback, for servers whose URL must be known before they start (e.g. an https issuer). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}
