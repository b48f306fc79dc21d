import { Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import { InvalidRequest, InvalidToken, MalformedBearer, SlowDown } from '../../errors.ts'
import { bearerToken } from '../bearer_token.ts'
import { delegationRefusal } from '../../iam/delegation.ts'
import { MAX_SUBJECT_TOKEN_BYTES } from '../../contract/token_request.ts'
import type { VerifiedSubject } from '../../iam/subject.ts'
import type { CertificateService } from '../../ca/certificate_service.ts'
import type { RequestLimits } from '../../ratelimit/request_limits.ts'
import { parseOrRefuse } from '../zod_refusal.ts'
import { clientAddress } from '../client_address.ts'
import { limitBody } from '../middleware/body_limit.ts'

/** A CSR (at most 16 KiB) and the names, with room to spare. */
const MAX_BODY = 64 * 1024

/** POST /v1/certificates body: the CSR proves the key; the names, role and site are what policy judges. */
export const CertificateBody = z.strictObject({
  /** Required unless dry_run. */
  csr: z.string().min(1).max(16 * 1024).optional(),
  role: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/),
  site: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/).optional(),
  dns: z.array(z.string().max(253)).min(1).max(16),
  ip: z.array(z.string().max(45)).max(16).default([]),
  lifetime: z.number().int().positive().optional(),
  /** Answer what the policy would decide; sign and record nothing (provision plan). */
  dry_run: z.boolean().optional(),
})

export const CertificateRevokeBody = z.strictObject({ reason: z.string().max(500).optional() })

/**
 * The pool CA over HTTP: the CA certificate and CRL for anyone; certificates for a caller whose IAM token
 * the policy admits (`verifyCaller`); revocation by serial for admins (`adminAuth`).
 */
export function certificateRoutes(deps: {
  certificates: CertificateService
  /** Verifies the bearer as an IAM access token and refuses revoked callers; throws InvalidToken. */
  verifyCaller: (bearer: string) => Promise<VerifiedSubject>
  adminAuth?: MiddlewareHandler
  /** The address limit of `rate_limits:`, shared with POST /token (the caller and role limits are the service's). */
  limits?: Pick<RequestLimits, 'blockedAddress' | 'noteRefused'>
}): Hono {
  const app = new Hono()
  app.get('/v1/ca/certificate', (c) => c.body(deps.certificates.caPem, 200, { 'Content-Type': 'application/x-pem-file', 'Cache-Control': 'max-age=300' }))
  app.get('/v1/ca/crl', async (c) => c.body(await deps.certificates.crl(), 200, { 'Content-Type': 'application/x-pem-file', 'Cache-Control': 'no-cache' }))

  app.post('/v1/certificates', limitBody(MAX_BODY), async (c) => {
    const actor = { requestId: c.get('requestId'), ...clientAddress(c) }
    // An address whose unauthenticated requests keep being refused is turned away before IAM is asked.
    const blocked = deps.limits?.blockedAddress(actor.clientAddress)
    if (blocked) throw new SlowDown(blocked.description, blocked.retryAfter)
    let subject: VerifiedSubject
    try {
      subject = await deps.verifyCaller(bearerToken(c.req.header('authorization'), MAX_SUBJECT_TOKEN_BYTES))
    } catch (err) {
      // Nobody to name: counts against the address, as a subject token that does not verify on POST /token.
      if (err instanceof InvalidToken || err instanceof MalformedBearer) deps.limits?.noteRefused(actor.clientAddress)
      throw err
    }
    await deps.certificates.admitCaller(subject, actor)
    // A token IAM issued to another client acting for the caller (src/iam/delegation.ts) is not the caller's:
    // 401 as any token that cannot act here, but its subject verified, so the attempt is on record under it.
    const actedFor = delegationRefusal(subject)
    if (actedFor !== undefined) throw await deps.certificates.refuse(new InvalidToken(actedFor, { presented: true }), subject, actor)
    // From here the caller is known: a malformed request is refused on record, as on POST /token.
    let b: z.infer<typeof CertificateBody>
    try {
      b = parseOrRefuse(CertificateBody, await readJson(c.req.raw), 'field')
      if (!b.dry_run && b.csr === undefined) throw new InvalidRequest('csr is required')
    } catch (err) {
      throw await deps.certificates.refuse(err, subject, actor)
    }
    c.header('Cache-Control', 'no-store')
    const names = { role: b.role, dns: b.dns, ip: b.ip, ...(b.site !== undefined ? { site: b.site } : {}), ...(b.lifetime !== undefined ? { lifetime: b.lifetime } : {}) }
    if (b.dry_run) {
      const d = await deps.certificates.check(names, subject)
      return c.json({ dry_run: d.allow ? { allow: true, rule: d.ruleId, lifetime: d.lifetime, ...(d.site ? { site: d.site } : {}) } : { allow: false, error: d.error, reason: d.reason } })
    }
    const cert = await deps.certificates.issue({ csr: b.csr!, ...names }, subject, actor)
    return c.json({ certificate: cert.pem, serial: cert.serial, not_before: cert.notBefore, not_after: cert.notAfter, ca_certificate: deps.certificates.caPem }, 201)
  })

  if (deps.adminAuth) {
    app.delete('/v1/certificates/:serial', deps.adminAuth, limitBody(MAX_BODY), async (c) => {
      const text = await c.req.text()
      const b = text.trim() === '' ? {} : parseOrRefuse(CertificateRevokeBody, parseText(text), 'field')
      const r = await deps.certificates.revoke(c.req.param('serial'), b.reason, { principal: c.get('admin').id, requestId: c.get('requestId'), ...clientAddress(c) })
      c.header('Cache-Control', 'no-store')
      return c.json({ serial: r.serial, revoked_at: r.revokedAt, not_after: r.notAfter }, r.already ? 200 : 201)
    })
  }
  return app
}

async function readJson(req: Request): Promise<unknown> {
  if (!/^application\/json\b/i.test(req.headers.get('content-type') ?? '')) throw new InvalidRequest('Content-Type must be application/json')
  return parseText(await req.text())
}

function parseText(text: string): unknown {
  try { return JSON.parse(text) } catch { throw new InvalidRequest('body is not valid JSON') }
}

