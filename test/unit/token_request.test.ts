import { describe, expect, it } from 'vitest'
import { parseTokenExchangeRequest } from '../../src/contract/token_request.ts'

const TE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const AT = 'urn:ietf:params:oauth:token-type:access_token'
const base = { grant_type: TE, subject_token: 'eyJ.a.b', subject_token_type: AT, role: 'startd' }

describe('parseTokenExchangeRequest', () => {
  it('maps requested_token_type to the token kind and merges audience with resource', () => {
    const r = parseTokenExchangeRequest({ ...base, requested_token_type: 'urn:htcondor:token-type:idtoken', audience: ['a:1', 'b:2'], resource: 'https://c.example', scope: 'condor:/READ  condor:/ADVERTISE_STARTD', lifetime: '600', host: 'wn01.example.org', site: 'cloud-1' })
    expect(r).toEqual({ subjectToken: 'eyJ.a.b', tokenKind: 'idtoken', role: 'startd', audience: ['a:1', 'b:2', 'https://c.example'], scopes: ['condor:/READ', 'condor:/ADVERTISE_STARTD'], lifetime: 600, host: 'wn01.example.org', params: { site: 'cloud-1' } })
  })

  it.each([
    [{ ...base, grant_type: undefined }, 'invalid_request', /grant_type is required/],
    [{ ...base, grant_type: 'password' }, 'unsupported_grant_type', /grant_type must be/],
    [{ ...base, subject_token: undefined }, 'invalid_request', /subject_token is required/],
    [{ ...base, subject_token_type: undefined }, 'invalid_request', /subject_token_type is required/],
    [{ ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' }, 'invalid_request', /subject_token_type must be/],
    [{ ...base, subject_token: ['a', 'b'] }, 'invalid_request', /subject_token must not be repeated/],
    [{ ...base, scope: ['a', 'b'] }, 'invalid_request', /scope must not be repeated/],
    [{ ...base, actor_token: 'x', actor_token_type: AT }, 'invalid_request', /delegation not supported/],
    [{ ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:saml1' }, 'invalid_request', /not supported/],
    [{ ...base, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }, 'invalid_request', /not supported/],
    [{ ...base, role: undefined }, 'invalid_request', /role is required/],
    [{ ...base, role: 'a b' }, 'invalid_request', /role must be/],
    [{ ...base, lifetime: '-1' }, 'invalid_request', /lifetime/],
    [{ ...base, lifetime: '1e9' }, 'invalid_request', /lifetime/],
    [{ ...base, resource: 'relative/path' }, 'invalid_request', /absolute URI/],
    [{ ...base, resource: 'https://x#frag' }, 'invalid_request', /without a fragment/],
    [{ ...base, host: 'bad host' }, 'invalid_request', /host/],
    [{ ...base, site: '../etc' }, 'invalid_request', /site must be a plain name/],
    [{ ...base, subject_token: 'x'.repeat(16 * 1024 + 1) }, 'invalid_request', /larger than/],
    [{ ...base, scope: 'compute.read '.repeat(200) }, 'invalid_request', /longer than 2048/],
    [{ ...base, scope: 'compute.réad' }, 'invalid_request', /printable ASCII/],
  ])('%# refuses bad input with %s', (form, code, message) => {
    const clean = Object.fromEntries(Object.entries(form).filter(([, v]) => v !== undefined)) as Record<string, string | string[]>
    let err: { error?: string; description?: string } = {}
    try { parseTokenExchangeRequest(clean) } catch (e) { err = e as typeof err }
    expect(err.error).toBe(code)
    expect(err.description).toMatch(message)
  })

  it('never echoes the subject token in an error', () => {
    const secret = 'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2ln'
    expect(() => parseTokenExchangeRequest({ ...base, subject_token: secret, requested_token_type: secret })).toThrow(/requested_token_type/)
    try { parseTokenExchangeRequest({ ...base, subject_token: secret, requested_token_type: secret }) } catch (e) {
      expect((e as Error).message).not.toContain('c2VjcmV0')
    }
  })
})
