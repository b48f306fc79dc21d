import { hash } from 'node:crypto'
import { Hono, type Context } from 'hono'
import { VAULT_CREDS_PREFIX, VAULT_PERMISSION_DENIED, VAULT_TOKEN_HEADER, type VaultReadResponse } from '../contract/job_credentials.ts'
import type { CredentialStore } from '../credentials/credential_store.ts'
import type { JobTokens } from '../credentials/job_tokens.ts'
import { AccessDenied, AuditStoreUnavailable, BrokerError, InvalidRequest, MethodNotAllowed, SlowDown, TemporarilyUnavailable } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import type { VaultRefusal } from '../metrics/broker_metrics.ts'
import type { RequestLimits } from '../ratelimit/request_limits.ts'
import { clientAddress } from './client_address.ts'
import { CountedVaultTokens } from './counted_vault_tokens.ts'
import { logStoreOutage } from './oauth_error_response.ts'
import { requestId } from './middleware/request_id.ts'
import { methodGuard } from './middleware/method_guard.ts'
import { MethodTable } from './method_table.ts'
import { singleValuedQuery } from './query_params.ts'
import { listParam, TokenQuery } from './routes/credentials.ts'

/**
 * The Vault-compatible read path, for HTCondor's unmodified Vault credmon: `GET <vault_url>` with the
 * `.top`'s `vault_token` in X-Vault-Token. Only this one read is offered; everything else answers as
 * Vault does, `{"errors": [...]}`. An unknown, mismatched or revoked token is 403 "permission denied",
 * the text on which that credmon deletes the user's `.top` and `.use`.
 */
const VAULT_READ_ROUTE = `${VAULT_CREDS_PREFIX}/:user/:provider`

/** A Vault token nobody holds (or another credential's): told apart from a known one's refusal only in metrics. */
class UnknownVaultToken extends AccessDenied {}

export function createVaultApp(deps: {
  store: Pick<CredentialStore, 'credentialByVaultToken'>; jobTokens: JobTokens; log: Logger
  /** rate_limits.address: a Vault token not found counts against its address, as a bearer that does not verify does on the main listener. */
  limits?: Pick<RequestLimits, 'blockedAddress' | 'noteRefused'> | undefined
  /** Counts each answer without a token, refusals, outages, unknown paths and faults (ctb_vault_refusals_total). */
  metrics?: { vaultRefused(reason: VaultRefusal): void } | undefined
}): Hono {
  const app = new Hono()
  const counted = new CountedVaultTokens()
  app.use(requestId())
  // The same 405 as the main listener's (RFC 9110 §15.5.6), answered in Vault's shape by vaultError. The read
  // mints and audits a token, so HEAD is among the refused methods: it would make one only to drop it.
  let methods: MethodTable | undefined
  app.use(methodGuard(() => (methods ??= new MethodTable(app.routes, { getMints: [VAULT_READ_ROUTE] }))))
  app.get(VAULT_READ_ROUTE, async (c) => {
    c.header('Cache-Control', 'no-store')
    // Before the token is looked up (a store query): an address that has sent too many tokens nobody
    // holds is turned away, whatever it sends now. Only those count: a token that was found and is then
    // refused (a revoked credential) is an access point's, not a guesser's.
    const { clientAddress: address } = clientAddress(c)
    const blocked = deps.limits?.blockedAddress(address)
    if (blocked) throw new SlowDown(blocked.description, blocked.retryAfter)
    const notFound = (description: string, count = true) => {
      if (count) deps.limits?.noteRefused(address)
      return new UnknownVaultToken(description)
    }
    const token = c.req.header(VAULT_TOKEN_HEADER)
    if (!token || token.length > 512) throw notFound('no Vault token')
    const digest = hash('sha256', token, 'hex')
    // Counted already and unknown for good (a random value nobody was given since): no store query again.
    if (counted.has(digest)) throw notFound('unknown Vault token', false)
    const cred = await deps.store.credentialByVaultToken(digest)
    // A token nobody holds counts once: a stale .top (registered again elsewhere) is sent at every scan.
    if (!cred) throw notFound('unknown Vault token', counted.firstTime(digest))
    if (cred.user !== c.req.param('user') || cred.provider !== c.req.param('provider')) throw notFound('another credential\'s Vault token')
    // Authenticated from here on: a revoked credential is refused by JobTokens, with its token.denied record.
    // One value per name, as on the token endpoint: c.req.query() would keep one of a repeated name's values
    // and answer a narrower question than was asked.
    const q = TokenQuery.extend({ audiences: TokenQuery.shape.audience }).safeParse(singleValuedQuery(c))
    if (!q.success) throw new InvalidRequest(`${q.error.issues[0]!.path.join('.')}: ${q.error.issues[0]!.message}`)
    const scopes = listParam(q.data.scopes)
    // The credmon says `audience` for paths under /creds/ and `audiences` elsewhere; take either, but not
    // both: one of them would go unread, a narrower answer than the question as with a repeated name.
    if (q.data.audience !== undefined && q.data.audiences !== undefined) throw new InvalidRequest('give audience or audiences, not both')
    const audience = listParam(q.data.audience ?? q.data.audiences)
    const t = await deps.jobTokens.token({
      user: cred.user, provider: cred.provider,
      ...(q.data.minimum_seconds !== undefined ? { minimumSeconds: Number(q.data.minimum_seconds) } : {}),
      ...(scopes ? { scopes } : {}), ...(audience ? { audience } : {}),
    }, { requestId: c.get('requestId'), ...clientAddress(c) })
    const body: VaultReadResponse = { data: { access_token: t.accessToken } }
    return c.json(body)
  })
  app.notFound((c) => {
    deps.metrics?.vaultRefused('not_found')
    return c.json({ errors: [] }, 404)
  })
  app.onError((err, c) => {
    // Counted once answered: should vaultError throw (a logger that throws), hono hands that throw to this
    // handler again at each middleware it passes, and the 500 the listener then answers is counted there.
    const res = vaultError(err, c, deps.log)
    deps.metrics?.vaultRefused(refusalOf(err))
    return res
  })
  return app
}

/**
 * The reason `err` is counted under, as vaultError answers it: every answer without a token is counted, so
 * a credmon whose reads fail for an outage shows in the metrics as one refused does.
 */
function refusalOf(err: unknown): VaultRefusal {
  if (err instanceof UnknownVaultToken) return 'unknown_token'
  if (err instanceof AccessDenied) return 'refused'
  // The listener's only 429: nothing behind it (JobTokens) answers slow_down.
  if (err instanceof SlowDown) return 'address_limit'
  if (err instanceof MethodNotAllowed) return 'method_not_allowed'
  if (err instanceof BrokerError && err.status === 400) return 'bad_request'
  if (err instanceof BrokerError && err.status === 401) return 'refused'
  // Told apart as on the main listener (store_unavailable): the store and IAM are different things to look at.
  if (err instanceof AuditStoreUnavailable) return 'store_unavailable'
  if (err instanceof TemporarilyUnavailable) return 'unavailable'
  return 'server_error'
}

/** Vault's error shape: `{"errors": [...]}`; permission problems say exactly "permission denied". */
function vaultError(err: unknown, c: Context, log: Logger): Response {
  c.header('Cache-Control', 'no-store')
  if (err instanceof AccessDenied) return c.json({ errors: [VAULT_PERMISSION_DENIED] }, 403)
  if (err instanceof TemporarilyUnavailable) {
    logStoreOutage(err, log, c.get('requestId'))
    c.header('Retry-After', String(err.retryAfter))
    return c.json({ errors: [err.description] }, 503)
  }
  // Never "permission denied": the Vault credmon would end the user's credential for being too fast.
  if (err instanceof SlowDown) {
    c.header('Retry-After', String(err.retryAfter))
    return c.json({ errors: [err.description] }, 429)
  }
  if (err instanceof MethodNotAllowed) {
    c.header('Allow', err.allow.join(', '))
    return c.json({ errors: ['unsupported operation'] }, 405)
  }
  if (err instanceof BrokerError && err.status === 400) return c.json({ errors: [err.description] }, 400)
  if (err instanceof BrokerError && err.status === 401) return c.json({ errors: [VAULT_PERMISSION_DENIED] }, 403)
  log.error('unhandled error on the Vault-compatible listener', { err, requestId: c.get('requestId') })
  return c.json({ errors: ['internal error'] }, 500)
}
