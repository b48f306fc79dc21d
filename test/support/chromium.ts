import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { createHash } from 'node:crypto'
import { chromium, type BrowserContext } from 'playwright-core'

/** Debian's Chromium (a shell wrapper that adds /etc/chromium.d flags); playwright-core speaks CDP to it over a pipe. */
export const CHROMIUM = '/usr/bin/chromium'

/**
 * The SHA-256 of the broker's leaf public key, read over a TLS connection that Node verified against the
 * development CA. Chromium has no per-launch trust store; pinning the key the test itself verified keeps
 * certificate checking on without touching the system's trust.
 */
export async function verifiedLeafSpki(host: string, port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ca, servername: 'localhost' }, () => {
      const spki = socket.getPeerX509Certificate()!.publicKey.export({ type: 'spki', format: 'der' })
      socket.end()
      resolve(createHash('sha256').update(spki).digest('base64'))
    })
    socket.once('error', reject)
  })
}

/**
 * Launches headless Chromium on a fresh profile, kept to loopback: no first-run, sync, component updates or
 * background requests, and every non-loopback request sent to a dead proxy. Fails naming the Debian
 * package when Chromium is missing.
 */
export async function launchChromium(o: { pinnedSpki: string }): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install the Debian package chromium (apt-get install --no-install-recommends chromium)`)
  const profile = mkdtempSync(join(tmpdir(), 'ctb-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Chromium bypasses a proxy for loopback by itself: anything else goes nowhere.
      '--proxy-server=http://127.0.0.1:9',
      `--ignore-certificate-errors-spki-list=${o.pinnedSpki}`,
    ],
    timeout: 60_000,
  })
  return {
    context,
    async close() {
      // Bounded: a close that hangs must not hang the suite.
      await Promise.race([context.close(), new Promise((r) => setTimeout(r, 15_000))])
      rmSync(profile, { recursive: true, force: true })
    },
  }
}
