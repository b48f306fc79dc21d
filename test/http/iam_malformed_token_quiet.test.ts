import { CompactSign } from 'jose'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidRequest } from '../../src/errors.ts'
import { createIamAdapter, type IamAdapter } from '../../src/iam/create_iam_adapter.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { b64json, iamConfigFor, mswFetch, secretReader, TestIam, useMswIam } from '../support/iam.ts'

const iam = await TestIam.create({ issuer: 'https://iam.test.example/' })
useMswIam(iam)

let adapter: IamAdapter | undefined
afterEach(() => { adapter?.close(); adapter = undefined })

/** Claims IAM would put in a valid token, so only the header is at fault. */
function claims(): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return { iss: iam.issuer, sub: 'alice', aud: 'https://wlcg.cern.ch/jwt/v1/any', 'wlcg.ver': '1.0', jti: `j-${now}-${Math.random()}`, iat: now, nbf: now, exp: now + 600 }
}

/** Signs with IAM's real key but a protected header of our choosing (jose's SignJWT refuses `crit`). */
async function signed(header: Record<string, unknown>): Promise<string> {
  const key = iam.signingKey
  const payload = new TextEncoder().encode(JSON.stringify(claims()))
  const crit = Object.fromEntries(((header.crit as string[] | undefined) ?? []).map((c) => [c, true]))
  return new CompactSign(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt', ...header } as never).sign(key.privateKey, { crit })
}

/** Same key, any header, even one jose would refuse to produce: the signature is made over our bytes. */
async function forged(header: Record<string, unknown>): Promise<string> {
  const key = iam.signingKey
  const input = `${b64json({ alg: key.alg, kid: key.kid, ...header })}.${b64json(claims())}`
  const sig = await crypto.subtle.sign({ name: 'RSASSA-PKCS1-v1_5' }, key.privateKey as CryptoKey, new TextEncoder().encode(input))
  return `${input}.${Buffer.from(sig).toString('base64url')}`
}

describe('a malformed subject token is a quiet invalid_request', () => {
  it.each([
    ['an unknown critical header parameter', () => signed({ crit: ['urn:example:must-understand'], 'urn:example:must-understand': 1 })],
    ['a registered claim named critical', () => signed({ crit: ['exp'], exp: 1 })],
    ['crit that is not an array', () => forged({ crit: 'exp' })],
    ['an empty crit list', () => forged({ crit: [] })],
    ['an unencoded payload', () => forged({ b64: false, crit: ['b64'] })],
  ])('%s: refused, and nothing logged at warn or error level, nor any stack', async (_name, make) => {
    const lines: string[] = []
    adapter = await createIamAdapter(iamConfigFor(iam), { log: createLogger((l) => { lines.push(l) }), fetch: mswFetch, readFile: secretReader(iam) })
    const err = await adapter.verifier.verify(await make()).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidRequest)
    const loud = lines.map((l) => JSON.parse(l) as { level: string }).filter((r) => r.level === 'warn' || r.level === 'error')
    expect(loud).toEqual([])
    expect(lines.join('')).not.toMatch(/stack|\\n\s+at /)
  })
})
