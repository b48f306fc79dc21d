import { describe, expect, it } from 'vitest'
import { pathOnly } from '../../src/http/access_log.ts'

// A token in standard base64 (`+`, `/`, `=`) pasted into a path is percent-encoded by the client
// (encodeURIComponent, curl --data-urlencode style), and hono's path decodes neither %2B, %2F nor %3D
// (decodeURI keeps reserved characters). Split at each escape, the token's pieces are each too short to
// look like a token: the access line must still not carry them.
const opaque = 'Ab3dEf7hIj1kLm9n+Op2qRs4tUv6wXy8z/Ab3dEf7hIj1kLm9n+Op2qRs4tUv6wXy8zAb3d=='

describe('the access line\'s path', () => {
  it('cuts a percent-encoded standard-base64 token from a path segment', () => {
    const logged = pathOnly(`/v1/certificates/${encodeURIComponent(opaque)}`)
    expect(logged).toBe('/v1/certificates/[token]')
  })

  it('keeps a path with nothing token-shaped byte for byte, its escapes included', () => {
    expect(pathOnly('/v1/credentials/alice%2Bbob/vault%3Dprovider')).toBe('/v1/credentials/alice%2Bbob/vault%3Dprovider')
    expect(pathOnly('/.well-known/openid-configuration?x=1')).toBe('/.well-known/openid-configuration')
  })
})

describe('the access line\'s path and hex tokens', () => {
  // What `openssl rand -hex 32` prints, the usual way to make the metrics bearer token by hand (docs/metrics.md
  // asks for 32 characters or more): lower-case hex has no upper case, so the mixed-case test passed it.
  const hexToken = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'

  it('cuts a long hex token from a path segment', () => {
    expect(pathOnly(`/metrics/${hexToken}`)).toBe('/metrics/[token]')
  })

  // A path segment is judged by its runs of token characters, and `=`, `.`, `-` are token characters: the hex
  // token was cut only when the run was nothing but hex, so a name or suffix stuck to it let it through whole.
  it('cuts a long hex token joined to other token characters in one segment', () => {
    expect(pathOnly(`/metrics/token=${hexToken}`)).toBe('/metrics/[token]')
    expect(pathOnly(`/metrics/${hexToken}.txt`)).toBe('/metrics/[token]')
  })

  it('keeps a pool CA serial (16 bytes of hex) readable', () => {
    expect(pathOnly('/v1/certificates/0a1b2c3d4e5f60718293a4b5c6d7e8f9')).toBe('/v1/certificates/0a1b2c3d4e5f60718293a4b5c6d7e8f9')
  })
})
