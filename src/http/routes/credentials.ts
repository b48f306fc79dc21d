import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import { CREDENTIALS_PATH, parseProvider, parseUser, RegisterCredentialRequest, type JobTokenResponse } from '../../contract/job_credentials.ts'
import { authenticateCredd, type CreddAuthDeps } from '../../credentials/credd_auth.ts'
import type { CredentialService, RegistrationRequest } from '../../credentials/credential_service.ts'
import type { StoredCredential } from '../../credentials/credential_store.ts'
import type { JobTokens } from '../../credentials/job_tokens.ts'
import { InvalidRequest, NotFound } from '../../errors.ts'
import { bearerToken } from '../bearer_token.ts'
import { MAX_SUBJECT_TOKEN_BYTES } from '../../contract/token_request.ts'
import type { Clock } from '../../lib/clock.ts'
import { clientAddress } from '../client_address.ts'
import { limitBody } from '../middleware/body_limit.ts'
import { NO_STORE_HEADERS } from '../oauth_error_response.ts'
import { parseOrRefuse } from '../zod_refusal.ts'
import { singleValuedQuery } from '../query_params.ts'

export interface CredentialRouteDeps {
  credentials: CredentialService
  jobTokens: JobTokens
  credd: CreddAuthDeps
  /** Admin bearer authentication for listing and revoking. */
  adminAuth: MiddlewareHandler
  clock: Clock
}

const MAX_BODY = 16 * 1024

/**
 * The bearer of an Authorization header, or the refusal bearerToken names. `maxLength`: the user's IAM token
 * on registration is bounded as POST /token bounds subject_token, so that an IAM token one route takes is
 * not "too long" on another; the credd's IDTOKEN keeps the reader's default.
 */
export function bearerOf(c: Context, maxLength?: number): string {
  return bearerToken(c.req.header('authorization'), maxLength)
}

/** `minimum_seconds`, `scopes`, `audience` query parameters, shared with the Vault-compatible read. */
export const TokenQuery = z.object({
  minimum_seconds: z.string().regex(/^\d{1,7}$/, 'must be a whole number of seconds').optional(),
  scopes: z.string().max(4096).optional(),
  audience: z.string().max(4096).optional(),
})

/** A list parameter: space- or comma-separated (HTCondor's storer and credmons use either). */
export function listParam(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined
  const items = v.split(/[\s,]+/).filter((s) => s.length > 0)
  if (items.some((s) => !/^[\x21-\x7e]+$/.test(s))) throw new InvalidRequest('scopes and audience must be printable ASCII')
  return items
}

/**
 * Users' job credentials: registration (bearer = the user's IAM token), the token endpoint our credmon
 * calls (bearer = the credd's broker-issued IDTOKEN), and admin listing and revocation.
 */
/** The job-token read: its GET refreshes or mints a token and audits it, so it takes no HEAD (method_table.ts). */
export const JOB_TOKEN_ROUTE = `${CREDENTIALS_PATH}/:user/:provider/token`

export function credentialRoutes(deps: CredentialRouteDeps): Hono {
  const app = new Hono()

  // Applied by the reader, not ahead of the handler: as middleware it refused a declared oversized body before
  // the address limit was checked (a blocked address got 400, not 429) and without counting it, and read a
  // chunked one before a blocked address was turned away. Its refusal is thrown (InvalidRequest), never returned.
  const bodyLimit = limitBody(MAX_BODY)
  app.post(CREDENTIALS_PATH, async (c) => {
    // Read only once the service has checked the address limit (it counts this reader's refusals too).
    const readRequest = async (): Promise<RegistrationRequest> => {
      const subjectToken = bearerOf(c, MAX_SUBJECT_TOKEN_BYTES)
      if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) throw new InvalidRequest('Content-Type must be application/json')
      await bodyLimit(c, async () => {})
      const text = await c.req.text()
      let raw: unknown
      try { raw = JSON.parse(text) } catch { throw new InvalidRequest('body is not valid JSON') }
      const b = parseOrRefuse(RegisterCredentialRequest, raw, 'field')
      return {
        subjectToken,
        input: { provider: b.provider, mode: b.mode, ...(b.handle !== undefined ? { handle: b.handle } : {}), ...(b.scopes !== undefined ? { scopes: b.scopes } : {}), ...(b.audience !== undefined ? { audience: b.audience } : {}) },
      }
    }
    const res = await deps.credentials.register(readRequest, { requestId: c.get('requestId'), ...clientAddress(c) })
    for (const [name, value] of Object.entries(NO_STORE_HEADERS)) c.header(name, value)
    return c.json(res, 201)
  })

  app.get(JOB_TOKEN_ROUTE, async (c) => {
    const credd = authenticateCredd(bearerOf(c), deps.credd)
    const { user, provider } = names(c)
    const q = TokenQuery.safeParse(singleValuedQuery(c))
    if (!q.success) throw new InvalidRequest(`${q.error.issues[0]!.path.join('.')}: ${q.error.issues[0]!.message}`)
    const scopes = listParam(q.data.scopes)
    const audience = listParam(q.data.audience)
    const t = await deps.jobTokens.token({
      user, provider,
      ...(q.data.minimum_seconds !== undefined ? { minimumSeconds: Number(q.data.minimum_seconds) } : {}),
      ...(scopes ? { scopes } : {}), ...(audience ? { audience } : {}),
    }, { requestId: c.get('requestId'), credd, ...clientAddress(c) })
    const body: JobTokenResponse = { access_token: t.accessToken, token_type: 'Bearer', expires_in: Math.max(0, t.exp - deps.clock.now()), scope: t.scope }
    for (const [name, value] of Object.entries(NO_STORE_HEADERS)) c.header(name, value)
    return c.json(body)
  })

  // Only registration is open: GET and HEAD (which hono answers with the GET handler) list credentials.
  app.get(CREDENTIALS_PATH, deps.adminAuth, async (c) => {
    c.header('Cache-Control', 'no-store')
    return c.json({ credentials: (await deps.credentials.list()).map(wire) })
  })

  app.delete(`${CREDENTIALS_PATH}/:user/:provider`, deps.adminAuth, async (c) => {
    const { user, provider } = names(c)
    const done = await deps.credentials.revoke(user, provider, `admin:${c.get('admin').id}`, { requestId: c.get('requestId') })
    if (!done) throw new NotFound('no unrevoked credential for this user and provider')
    c.header('Cache-Control', 'no-store')
    return c.json({ revoked: { user, provider } })
  })

  return app
}

function names(c: Context): { user: string; provider: string } {
  const user = parseUser(c.req.param('user') ?? '')
  const provider = parseProvider(c.req.param('provider') ?? '')
  if (!user || !provider) throw new InvalidRequest('user or provider is not a valid name')
  return { user, provider }
}

/** The admin view of a credential: no ciphertext, no Vault token digest. */
function wire(c: StoredCredential) {
  return {
    user: c.user, provider: c.provider, kind: c.kind, iss: c.iss, sub: c.sub, scopes: c.scopes.join(' '), audience: c.audience.join(' '),
    created_at: c.createdAt, ...(c.rotatedAt !== undefined ? { rotated_at: c.rotatedAt } : {}),
    revoked: c.revoked, ...(c.revokedAt !== undefined ? { revoked_at: c.revokedAt } : {}), ...(c.revokedBy !== undefined ? { revoked_by: c.revokedBy } : {}),
    ...(c.sealed ? { key_id: c.sealed.keyId } : {}),
  }
}
