import { tokenIntrospection, type Configuration } from 'openid-client'
import type { IamDiscovery, TrustedIssuer } from './discovery.ts'
import { iamFailureReason } from './iam_errors.ts'
import { classifyIamFailure } from './iam_failure.ts'
import type { IamFetch } from './iam_fetch.ts'

export type IamCheckStepName = 'discovery' | 'jwks' | 'introspection'

/** One step of checking one IAM issuer: what was asked, where, and the outcome. */
export interface IamCheckStep {
  issuer: string
  step: IamCheckStepName
  /** The URL asked, when known (not for a step skipped because discovery failed). */
  url?: string
  ok: boolean
  /** Why the step failed: HTTP status, IAM error, or the transport cause (dns, tls, refused, timeout). */
  reason?: string
}

/** Opaque junk for the introspection probe: any well-formed token IAM does not hold answers `active: false`. */
const PROBE_TOKEN = 'condor-token-broker-iam-check'

/**
 * Checks that the broker can use an IAM issuer, step by step as the broker itself would: discovery (the
 * document, the issuer it names, a usable jwks_uri), the JWKS (a key set with at least one key) and, with
 * `introspection`, RFC 7662 introspection authenticated with the broker's client credentials (the probe
 * token is not IAM's, so a healthy IAM answers `active: false`; refused credentials fail the step).
 * A step after a failed discovery is reported failed too, as it could not be tried. `open`: the reasons
 * are for an answer without auth (/readyz): iamFailureReason's `open`.
 */
export async function checkIamIssuer(
  issuer: TrustedIssuer,
  deps: { discovery: IamDiscovery; fetch: IamFetch; timeoutSeconds: number },
  options: { introspection: boolean; open?: boolean },
): Promise<IamCheckStep[]> {
  const iss = issuer.config.issuer
  const steps: IamCheckStep[] = []
  let configuration: Configuration
  try {
    configuration = await deps.discovery.probe(iss)
    steps.push({ issuer: iss, step: 'discovery', url: issuer.discoveryUrl, ok: true })
  } catch (err) {
    steps.push({ issuer: iss, step: 'discovery', url: issuer.discoveryUrl, ok: false, reason: iamFailureReason(err, { open: options.open === true }) })
    steps.push({ issuer: iss, step: 'jwks', ok: false, reason: 'not tried: discovery failed' })
    if (options.introspection) steps.push({ issuer: iss, step: 'introspection', ok: false, reason: 'not tried: discovery failed' })
    return steps
  }
  const meta = configuration.serverMetadata()
  const jwksUri = meta.jwks_uri!
  steps.push({ issuer: iss, step: 'jwks', url: jwksUri, ...await checkJwks(jwksUri, deps) })
  if (options.introspection) {
    const url = meta.introspection_endpoint
    if (!url) steps.push({ issuer: iss, step: 'introspection', ok: false, reason: 'discovery names no introspection_endpoint' })
    else {
      try {
        const res = await tokenIntrospection(configuration, PROBE_TOKEN, { token_type_hint: 'access_token' })
        steps.push(typeof res.active === 'boolean'
          ? { issuer: iss, step: 'introspection', url, ok: true }
          : { issuer: iss, step: 'introspection', url, ok: false, reason: 'answer has no boolean "active"' })
      } catch (err) {
        steps.push({ issuer: iss, step: 'introspection', url, ok: false, reason: iamFailureReason(err, { open: options.open === true }) })
      }
    }
  }
  return steps
}

async function checkJwks(url: string, deps: { fetch: IamFetch; timeoutSeconds: number }): Promise<{ ok: boolean; reason?: string }> {
  let res: Response
  try {
    res = await deps.fetch(url, { method: 'GET', redirect: 'manual', headers: { accept: 'application/json' }, signal: AbortSignal.timeout(Math.ceil(deps.timeoutSeconds * 1000)) })
  } catch (err) {
    return { ok: false, reason: classifyIamFailure(err).cause }
  }
  if (res.status !== 200) { await res.body?.cancel(); return { ok: false, reason: `HTTP ${res.status}` } }
  let body: unknown
  try {
    body = await res.json()
  } catch (err) {
    return { ok: false, reason: err instanceof SyntaxError ? 'not JSON' : classifyIamFailure(err).cause }
  }
  const keys = (body as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys) || keys.length === 0) return { ok: false, reason: 'no keys in the key set' }
  return { ok: true }
}

/** One line per step, as `iam check` prints it: `<issuer> <step> ok|fail [url] [: reason]`. */
export function formatIamCheckStep(s: IamCheckStep): string {
  return `${s.issuer} ${s.step} ${s.ok ? 'ok' : 'FAIL'}${s.url ? ` ${s.url}` : ''}${s.reason ? `: ${s.reason}` : ''}`
}
