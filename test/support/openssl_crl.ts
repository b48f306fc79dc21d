import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'vitest'
import { tempDir } from './tmp.ts'

/**
 * A PEM CRL's entries as openssl reads them (not our parser): serial (lower-case hex) → the entry's reason
 * code as openssl names it ('' when it has none). Fails the test when a serial is listed twice.
 */
export function opensslCrlEntries(pem: string): Map<string, string> {
  const file = join(tempDir(), 'crl.pem')
  writeFileSync(file, pem)
  const r = spawnSync('openssl', ['crl', '-in', file, '-noout', '-text'], { encoding: 'utf8' })
  if (r.error) throw new Error('this test needs the openssl CLI (Debian package openssl)')
  const out = new Map<string, string>()
  for (const block of r.stdout.split('Serial Number: ').slice(1)) {
    const serial = block.match(/^([0-9A-F]+)/)![1]!.toLowerCase()
    expect(out.has(serial), `serial ${serial} is listed twice`).toBe(false)
    out.set(serial, block.match(/CRL Reason Code:\s*\n\s*(.+)/)?.[1]?.trim() ?? '')
  }
  return out
}

/**
 * A PEM CRL's CRL number as openssl decodes it from the DER (`crl -noout -crlnumber`), not our encoder.
 * openssl prints a negative INTEGER with a minus sign, which the pattern refuses.
 */
export function opensslCrlNumber(pem: string): bigint {
  const file = join(tempDir(), 'crl.pem')
  writeFileSync(file, pem)
  const r = spawnSync('openssl', ['crl', '-in', file, '-noout', '-crlnumber'], { encoding: 'utf8' })
  if (r.error) throw new Error('this test needs the openssl CLI (Debian package openssl)')
  expect(r.status, r.stderr).toBe(0)
  const hex = r.stdout.trim().match(/^crlNumber=(?:0x)?([0-9A-F]+)$/)?.[1]
  expect(hex, `openssl printed ${r.stdout.trim()}`).toBeDefined()
  return BigInt(`0x${hex}`)
}
