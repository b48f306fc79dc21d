import { describe, expect, it } from 'vitest'
import { deriveIdTokenKey, scramble } from '../../src/keys/condor_key_file.ts'
import { canonicalJson } from '../../src/issuance/canonical_json.ts'
import { mintIdToken, prepareIdTokenKey, type IdTokenClaims } from '../../src/issuance/idtoken.ts'
import { SignJWT } from 'jose'

// Test vector from docs/htcondor-tokens.md §4.
const UNSCRAMBLED = Buffer.from(Array.from({ length: 64 }, (_, i) => i))
const KEY_FILE_HEX =
  'deacbcecdaa8b8e8d6a4b4e4d2a0b0e0cebcacfccab8a8f8c6b4a4f4c2b0a0f0' +
  'fe8c9cccfa8898c8f68494c4f28090c0ee9c8cdcea9888d8e69484d4e29080d0'
const PAYLOAD =
  '{"exp":1700003600,"iat":1700000000,"iss":"pool.example.com","jti":"0123456789abcdef0123456789abcdef","scope":"condor:\\/READ condor:\\/ADVERTISE_STARTD condor:\\/ADVERTISE_MASTER","sub":"condor@pool.example.com"}'
const POOL_TOKEN =
  'eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.eyJleHAiOjE3MDAwMDM2MDAsImlhdCI6MTcwMDAwMDAwMCwiaXNzIjoicG9vbC5leGFtcGxlLmNvbSIsImp0aSI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwic2NvcGUiOiJjb25kb3I6XC9SRUFEIGNvbmRvcjpcL0FEVkVSVElTRV9TVEFSVEQgY29uZG9yOlwvQURWRVJUSVNFX01BU1RFUiIsInN1YiI6ImNvbmRvckBwb29sLmV4YW1wbGUuY29tIn0.qHCUEwGE-hEljF2Ot5YnJzK6qVIB2RlB_GTFcqiWZkY'
const CLAIMS: IdTokenClaims = {
  sub: 'condor@pool.example.com',
  scope: 'condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER',
  jti: '0123456789abcdef0123456789abcdef',
  iss: 'pool.example.com',
  iat: 1700000000,
  exp: 1700003600,
}
const fileBytes = Buffer.from(KEY_FILE_HEX, 'hex')

describe('HTCondor key file scramble', () => {
  it('scrambles the 00..3f key into the vector file bytes', () => {
    expect(scramble(UNSCRAMBLED).toString('hex')).toBe(KEY_FILE_HEX)
  })
  it('is its own inverse (round trip)', () => {
    expect(scramble(fileBytes)).toEqual(UNSCRAMBLED)
    expect(scramble(scramble(fileBytes))).toEqual(fileBytes)
  })
})

describe('IDTOKEN key derivation', () => {
  it('doubles POOL before HKDF', () => {
    expect(deriveIdTokenKey(fileBytes, 'POOL').toString('hex')).toBe('103ee5562471b941454e2c67bd4f58870bc1acd1908fd846c2fc471711b4d39d')
  })
  it('does not double a named key', () => {
    expect(deriveIdTokenKey(fileBytes, 'key1').toString('hex')).toBe('ce74508bac81a421cf56451aa6ea08dbb123aef386724b005d789171406172b5')
  })
  it('differs when the unscramble is forgotten', () => {
    expect(deriveIdTokenKey(scramble(fileBytes), 'POOL').toString('hex')).not.toBe('103ee5562471b941454e2c67bd4f58870bc1acd1908fd846c2fc471711b4d39d')
  })
})

describe('IDTOKEN minting matches condor_token_create byte for byte', () => {
  it('serialises the payload canonically, escaping "/"', () => {
    expect(canonicalJson(CLAIMS)).toBe(PAYLOAD)
  })
  it('reproduces the POOL token', () => {
    expect(mintIdToken(CLAIMS, prepareIdTokenKey('POOL', fileBytes))).toBe(POOL_TOKEN)
  })
  it('reproduces the named-key signature', () => {
    const token = mintIdToken(CLAIMS, prepareIdTokenKey('key1', fileBytes))
    expect(token.split('.')[0]).toBe(Buffer.from('{"alg":"HS256","kid":"key1"}').toString('base64url'))
    expect(token.split('.')[2]).toBe('EvAx9WakOV0wjY9nTpfRH9wn5Uo08mYMDW8nwfljNak')
  })
  it('differs from what SignJWT yields (unescaped "/")', async () => {
    const jwtKey = deriveIdTokenKey(fileBytes, 'POOL')
    const sorted = Object.fromEntries(Object.entries(CLAIMS).sort(([a], [b]) => (a < b ? -1 : 1)))
    const viaJose = await new SignJWT(sorted).setProtectedHeader({ alg: 'HS256', kid: 'POOL' }).sign(jwtKey)
    expect(viaJose.split('.')[2]).toBe('5-siF9_sbAjwqdWZ81R3c5yz6nCV2XF1ktN2IfLZOmY')
    expect(viaJose).not.toBe(POOL_TOKEN)
  })
  it('refuses non-ASCII claim values', () => {
    expect(() => canonicalJson({ sub: 'andré@x' })).toThrow(/non-ASCII/)
  })
})
