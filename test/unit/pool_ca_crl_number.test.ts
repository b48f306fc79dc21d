import 'reflect-metadata'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { initPoolCa, PoolCa } from '../../src/ca/pool_ca.ts'
import { opensslCrlEntries, opensslCrlNumber } from '../support/openssl_crl.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * RFC 5280 §5.2.3: a relying party tells which of two CRLs of one issuer supersedes the other by their CRL
 * numbers. Broker replicas share the pool CA's key but no counter, and each signs CRLs on demand. The
 * number is read back by openssl from the DER; what it must be is stated here, from the clock the test
 * gives: the signing second above 64 low bits, which tell apart the CRLs of one second.
 */

const NOW = Math.floor(Date.now() / 1000)
const LOW_BITS = 64n
const second = (n: bigint) => n >> LOW_BITS

/** Two replicas: the same CA directory loaded twice, as two broker processes would. */
async function replicas(count = 2): Promise<PoolCa[]> {
  const dir = join(tempDir(), 'ca')
  await initPoolCa(dir, { name: 'test CA', now: NOW })
  return Promise.all(Array.from({ length: count }, () => PoolCa.load(dir)))
}

const REVOKED = { serial: '1f00aa', revokedAt: NOW - 10 }

describe('CRL numbers of the pool CA', () => {
  it('numbers differently two CRLs that two replicas sign in the same second, one listing a new revocation', async () => {
    const [a, b] = await replicas()
    const before = await a!.crl([], { now: NOW, lifetime: 3600 })
    const after = await b!.crl([REVOKED], { now: NOW, lifetime: 3600 })
    expect(opensslCrlEntries(before).has(REVOKED.serial)).toBe(false)
    expect(opensslCrlEntries(after).has(REVOKED.serial)).toBe(true)
    const [n1, n2] = [opensslCrlNumber(before), opensslCrlNumber(after)]
    expect(n1).not.toBe(n2)
    expect([second(n1), second(n2)]).toEqual([BigInt(NOW), BigInt(NOW)])
  })

  it('numbers a CRL of a later second higher, whichever replica signed the earlier ones', async () => {
    const [a, b] = await replicas()
    // Replica a signs three CRLs in one second (a number per CRL, each higher than the last); replica b
    // signs in the next second, knowing nothing of them.
    const first = []
    for (let i = 0; i < 3; i++) first.push(opensslCrlNumber(await a!.crl([], { now: NOW, lifetime: 3600 })))
    const next = opensslCrlNumber(await b!.crl([REVOKED], { now: NOW + 1, lifetime: 3600 }))
    for (const n of first) expect(next).toBeGreaterThan(n)
    expect(second(next)).toBe(BigInt(NOW + 1))
    // And back: a's next second is above all of b's earlier one.
    const later = opensslCrlNumber(await a!.crl([REVOKED], { now: NOW + 2, lifetime: 3600 }))
    expect(later).toBeGreaterThan(next)
    expect(second(later)).toBe(BigInt(NOW + 2))
  })

  it('numbers each CRL one process signs higher than its last, within one second and when the clock steps back', async () => {
    const [ca] = await replicas(1)
    const numbers: bigint[] = []
    for (let i = 0; i < 5; i++) numbers.push(opensslCrlNumber(await ca!.crl([], { now: NOW, lifetime: 3600 })))
    numbers.push(opensslCrlNumber(await ca!.crl([], { now: NOW - 5, lifetime: 3600 })))
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBeGreaterThan(numbers[i - 1]!)
    // Within the second the number stays in that second's range: it still says when it was signed.
    for (const n of numbers) expect(second(n)).toBe(BigInt(NOW))
  })

  it('keeps the number a positive INTEGER of at most 20 octets, as RFC 5280 bounds it', async () => {
    // From 2038 (2^31 s) the top bit of the number's first octet is set, and a zero octet must precede it
    // or openssl reads a negative number; in the year 2514 the second needs 34 bits, 98 with the 64 below.
    for (const now of [2 ** 31, 2 ** 32 - 1, 2 ** 34 - 1]) {
      const [ca] = await replicas(1)
      const n = opensslCrlNumber(await ca!.crl([], { now, lifetime: 3600 }))
      expect(second(n)).toBe(BigInt(now))
      expect(n).toBeLessThan(1n << 159n)
    }
  })

  // Any order of signings over three replicas and a few seconds: the numbers are all different, and a later
  // second always outranks an earlier one.
  it('orders the CRLs of any replicas by their seconds and never repeats a number', async () => {
    const cas = await replicas(3)
    let start = NOW
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ replica: fc.integer({ min: 0, max: 2 }), step: fc.integer({ min: 0, max: 1 }) }), { minLength: 2, maxLength: 6 }),
      async (schedule) => {
        // Each run starts beyond every second an earlier run used, as a real clock goes on.
        let now = start += 10
        const signed: Array<{ now: number; n: bigint }> = []
        for (const { replica, step } of schedule) {
          now += step
          signed.push({ now, n: opensslCrlNumber(await cas[replica]!.crl([], { now, lifetime: 3600 })) })
        }
        expect(new Set(signed.map((s) => s.n)).size).toBe(signed.length)
        for (const s of signed) expect(second(s.n)).toBe(BigInt(s.now))
        for (const x of signed) for (const y of signed) if (x.now < y.now) expect(y.n).toBeGreaterThan(x.n)
      },
    ), { numRuns: 20 })
  })
})
