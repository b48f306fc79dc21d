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
