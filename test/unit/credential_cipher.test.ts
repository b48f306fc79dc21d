import { createDecipheriv, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { CredentialCipher, loadCredentialKey, parseCredentialKey } from '../../src/credentials/credential_cipher.ts'
import { OperatorError } from '../../src/errors.ts'
import { writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '../support/tmp.ts'

const BINDING = { user: 'alice', provider: 'cms', scopes: ['compute.read', 'storage.read:/store'], audience: ['https://se.example.org'] }
const RT = 'eyJhbGciOiJub25lIn0.refresh-token-of-alice.x'

describe('CredentialCipher (AES-256-GCM for refresh tokens at rest)', () => {
  it('round-trips, with a fresh nonce each time and ciphertext that is not the token', () => {
    const c = new CredentialCipher(randomBytes(32))
    const a = c.seal(RT, BINDING)
    const b = c.seal(RT, BINDING)
    expect(a.nonce).not.toBe(b.nonce)
    expect(Buffer.from(a.nonce, 'base64')).toHaveLength(12)
    expect(a.ciphertext).not.toContain(RT)
    expect(Buffer.from(a.ciphertext, 'base64').toString('latin1')).not.toContain('refresh-token-of-alice')
    expect(c.open(a, BINDING)).toBe(RT)
    expect(c.open(b, BINDING)).toBe(RT)
  })

  it('is standard AES-256-GCM: node:crypto opens it with the key, nonce and 16-byte tag at the end', () => {
    const key = randomBytes(32)
    const sealed = new CredentialCipher(key).seal(RT, BINDING)
    const body = Buffer.from(sealed.ciphertext, 'base64')
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.nonce, 'base64'))
    d.setAAD(Buffer.from(JSON.stringify(['ctb-credential-v1', sealed.keyId, 'alice', 'cms', BINDING.scopes, BINDING.audience])))
    d.setAuthTag(body.subarray(body.length - 16))
    expect(Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]).toString('utf8')).toBe(RT)
  })

  it('refuses to open with a wrong key, naming both key ids, and with a same-id forged key', () => {
    const sealed = new CredentialCipher(randomBytes(32)).seal(RT, BINDING)
    const other = new CredentialCipher(randomBytes(32))
    expect(() => other.open(sealed, BINDING)).toThrow(OperatorError)
    expect(() => other.open(sealed, BINDING)).toThrow(new RegExp(`sealed with key ${sealed.keyId}, not the configured key ${other.keyId}`))
    expect(() => other.open({ ...sealed, keyId: other.keyId }, BINDING)).toThrow(/does not authenticate/)
  })

  it('binds the ciphertext to user, provider, scopes and audience', () => {
    const c = new CredentialCipher(randomBytes(32))
    const sealed = c.seal(RT, BINDING)
    for (const moved of [{ ...BINDING, user: 'mallory' }, { ...BINDING, provider: 'atlas' }, { ...BINDING, scopes: [...BINDING.scopes, 'storage.modify:/'] }, { ...BINDING, audience: ['https://any'] }]) {
      expect(() => c.open(sealed, moved)).toThrow(/does not authenticate/)
    }
    const flipped = Buffer.from(sealed.ciphertext, 'base64')
    flipped[0]! ^= 1
    expect(() => c.open({ ...sealed, ciphertext: flipped.toString('base64') }, BINDING)).toThrow(/does not authenticate/)
  })
})

describe('credential key loading', () => {
  it('reads hex or base64 from the environment variable before the file', () => {
    const key = randomBytes(32)
    expect(parseCredentialKey(key.toString('hex'), 'X')).toEqual(key)
    expect(parseCredentialKey(`${key.toString('base64')}\n`, 'X')).toEqual(key)
    expect(() => parseCredentialKey('short', 'X')).toThrow(/32 bytes/)
    const file = join(tempDir(), 'absent.key')
    expect(loadCredentialKey({ file, envName: 'K', create: false }, { K: key.toString('hex') }).key).toEqual(key)
  })

  it('refuses a missing key in production, creates one (0600) in development, and refuses a readable file', () => {
    const dir = tempDir()
    const file = join(dir, 'credentials.key')
    expect(() => loadCredentialKey({ file, envName: 'K', create: false }, {})).toThrow(/no credential key: set K or create/)
    const made = loadCredentialKey({ file, envName: 'K', create: true }, {})
    expect(made.created).toBe(file)
    expect(loadCredentialKey({ file, envName: 'K', create: false }, {}).key).toEqual(made.key)
    const loose = join(dir, 'loose.key')
    writeFileSync(loose, randomBytes(32).toString('base64'))
    chmodSync(loose, 0o644)
    expect(() => loadCredentialKey({ file: loose, envName: 'K', create: false }, {})).toThrow()
  })
})
