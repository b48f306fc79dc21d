import { generateKeyPairSync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { OperatorError } from '../../src/errors.ts'
import { prepareIdTokenKey } from '../../src/issuance/idtoken.ts'
import { assertKeysSign } from '../../src/issuance/key_self_test.ts'
import type { AsymmetricKey } from '../../src/issuance/scitoken.ts'
import type { SigningKeys } from '../../src/keys/signing_keys.ts'

const ISSUERS = { trustDomain: 'pool.example.org', issuer: 'https://broker.example.org' }
const NOW = 1_800_000_000

function ec(): { privateKey: AsymmetricKey['privateKey']; publicKey: AsymmetricKey['publicKey'] } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
}

function keys(scitoken: AsymmetricKey): SigningKeys {
  return { idtoken: prepareIdTokenKey('broker1', Buffer.alloc(64, 7)), scitoken, jwks: [] }
}

describe('assertKeysSign (once per key at load, instead of a check after every mint)', () => {
  it('passes keys that sign and verify', () => {
    const { privateKey, publicKey } = ec()
    expect(() => assertKeysSign(keys({ kid: 'k1', alg: 'ES256', privateKey, publicKey }), ISSUERS, NOW)).not.toThrow()
  })

  it('refuses a SciToken key whose public half does not match its private half, with one operator line', () => {
    const a = ec()
    const b = ec()
    const run = () => assertKeysSign(keys({ kid: 'k1', alg: 'ES256', privateKey: a.privateKey, publicKey: b.publicKey }), ISSUERS, NOW)
    expect(run).toThrow(OperatorError)
    expect(run).toThrow(/signing keys failed their self-test: minted SciToken does not verify/)
  })

  it('refuses a key the minting code cannot use (a SciToken key of the wrong type)', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    expect(() => assertKeysSign(keys({ kid: 'k1', alg: 'ES256', privateKey: rsa.privateKey, publicKey: rsa.publicKey }), ISSUERS, NOW)).toThrow(OperatorError)
  })
})
