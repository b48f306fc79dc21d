import { createHmac, createPublicKey, timingSafeEqual, type KeyObject, type webcrypto } from 'node:crypto'
import { AUTHZ_LEVELS } from '../issuance/authz.ts'
import { decodeCompact, verifyAsymmetric, type AsymmetricAlg } from '../issuance/jws.ts'
import type { PublicJwk } from '../keys/jwk.ts'
import { asciiLower, asciiUpper } from '../lib/ascii_case.ts'

export type TokenKind = 'idtoken' | 'scitoken' | 'unknown'

export interface InspectReport {
  kind: TokenKind
  header: Record<string, unknown>
  payload: Record<string, unknown>
  /** 'valid' | 'invalid' | a sentence saying why it was not checked. */
  signature: string
  /** Reasons a verifier (HTCondor, scitokens-cpp) would refuse the token. Empty means it would accept it. */
  problems: string[]
  /** Things worth knowing that do not make it fail. */
  warnings: string[]
}

export interface InspectContext {
  now: number
  /** HTCondor key (derived HMAC key object) for the token's kid, if we have it. */
  idtokenKey?: { kid: string; hmac: KeyObject; source: string }
  /** The pool's TRUST_DOMAIN: clients skip tokens whose iss differs (docs/htcondor-tokens.md §2.1). */
  trustDomain?: string
  /** The server's IssuerKeys: clients skip tokens whose kid is not among them. */
  issuerKeys?: readonly string[]
  /** Public keys to check SciTokens against (the broker's JWKS). */
  jwks?: readonly PublicJwk[]
}

const HMAC_ALGS: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }
const LEVELS = new Set<string>(AUTHZ_LEVELS)

function when(epoch: number): string {
  return new Date(epoch * 1000).toISOString()
}

/**
 * Decodes a token and says, in HTCondor's and scitokens-cpp's terms, whether it would be accepted and,
 * if not, why. Mirrors the client-side selection (§2.1) and server-side checks (§2.3, §5.2) in
 * docs/htcondor-tokens.md.
 */
export function inspectToken(token: string, ctx: InspectContext): InspectReport {
  const d = decodeCompact(token.trim())
  if (!d) {
    return { kind: 'unknown', header: {}, payload: {}, signature: 'not checked: not a compact JWS', problems: ['not a JWT (expected three base64url parts)'], warnings: [] }
  }
  const alg = String(d.header.alg ?? '')
  // hasOwn, not `in`: the alg is the token's text, and `toString` is in every object.
  if (Object.hasOwn(HMAC_ALGS, alg)) return inspectIdToken(d, alg, ctx)
  if (alg === 'ES256' || alg === 'RS256') return inspectSciToken(d, alg, ctx)
  return { kind: 'unknown', header: d.header, payload: d.payload, signature: 'not checked', problems: [`algorithm "${alg}" is accepted by neither HTCondor nor scitokens-cpp`], warnings: [] }
}

type Decoded = NonNullable<ReturnType<typeof decodeCompact>>

function checkTimes(p: Record<string, unknown>, now: number, problems: string[], warnings: string[], nbfMatters: boolean): void {
  if (p.exp === undefined) warnings.push('no exp: HTCondor treats this token as never expiring')
  else if (typeof p.exp !== 'number') problems.push('exp is not a number')
  else if (now > p.exp) problems.push(`expired at ${when(p.exp)} (${now - p.exp} s ago)`)
  if (nbfMatters && typeof p.nbf === 'number' && p.nbf > now) problems.push(`not valid before ${when(p.nbf)}`)
  if (typeof p.iat === 'number' && p.iat > now + 60) warnings.push(`issued in the future (${when(p.iat)}): check clocks`)
}

function inspectIdToken(d: Decoded, alg: string, ctx: InspectContext): InspectReport {
  const p = d.payload
  const problems: string[] = []
  const warnings: string[] = []
  const kid = typeof d.header.kid === 'string' ? d.header.kid : ''
  if (!kid) problems.push('no kid in header: HTCondor requires the signing key name')
  if (alg !== 'HS256') warnings.push(`${alg}: HTCondor verifies it, but only mints HS256`)
  if (typeof p.iss !== 'string' || p.iss === '') problems.push('no iss: HTCondor requires the trust domain as issuer')
  else if (ctx.trustDomain !== undefined && p.iss !== ctx.trustDomain) {
    problems.push(`iss "${p.iss}" differs from trust domain "${ctx.trustDomain}": HTCondor clients silently skip this token`)
  }
  if (ctx.issuerKeys && kid && !ctx.issuerKeys.includes(kid)) {
    problems.push(`kid "${kid}" is not among the server's IssuerKeys (${ctx.issuerKeys.join(', ')}): clients skip this token`)
  }
  if (typeof p.sub !== 'string' || p.sub.lastIndexOf('@') <= 0) problems.push('sub must be user@domain')
  if (typeof p.jti !== 'string' || p.jti === '') problems.push('no jti: HTCondor refuses tokens without one')
  checkTimes(p, ctx.now, problems, warnings, false)
  const scopes = typeof p.scope === 'string' ? p.scope.split(' ').filter(Boolean) : []
  const condor = scopes.filter((s) => asciiLower(s).startsWith('condor:/'))
  for (const s of condor) if (!LEVELS.has(asciiUpper(s.slice(8)))) problems.push(`unknown authorization level in scope "${s}"`)
  if (condor.length === 0) warnings.push('no condor:/ scope: the token is unrestricted (whatever the ALLOW lists give its identity)')

  let signature: string
  if (!ctx.idtokenKey) signature = `not checked: no key file for kid "${kid}" (pass --key-file)`
  else if (ctx.idtokenKey.kid !== kid) signature = `not checked: the key given is "${ctx.idtokenKey.kid}", the token names "${kid}"`
  else {
    const mac = createHmac(HMAC_ALGS[alg]!, ctx.idtokenKey.hmac).update(d.signingInput).digest()
    const given = Buffer.from(d.signature, 'base64url')
    if (given.length === mac.length && timingSafeEqual(given, mac)) signature = `valid (${ctx.idtokenKey.source})`
    else {
      signature = 'invalid'
      problems.push(`signature does not verify with ${ctx.idtokenKey.source} (a different key, or a POOL/named-key mix-up)`)
    }
  }
  return { kind: 'idtoken', header: d.header, payload: p, signature, problems, warnings }
}

function inspectSciToken(d: Decoded, alg: AsymmetricAlg, ctx: InspectContext): InspectReport {
  const p = d.payload
  const problems: string[] = []
  const warnings: string[] = []
  if (typeof p.iss !== 'string' || !p.iss.startsWith('https://')) problems.push('iss must be an https URL (scitokens-cpp: "Issuer URL must be HTTPS")')
  const profile = p['wlcg.ver'] !== undefined ? 'wlcg' : p.ver === 'scitoken:2.0' ? 'scitokens2' : p.ver === undefined ? 'scitokens1' : 'unknown'
  if (profile === 'scitokens1') warnings.push('no ver or wlcg.ver: SciTokens 1.0 profile, where unknown claims fail verification')
  if (profile === 'unknown') problems.push(`unknown ver "${String(p.ver)}"`)
  if (profile === 'wlcg' && !/^1\.\d+$/.test(String(p['wlcg.ver']))) problems.push(`unsupported wlcg.ver "${String(p['wlcg.ver'])}"`)
  if ((profile === 'wlcg' || profile === 'scitokens2') && p.aud === undefined) problems.push('no aud: mandatory in this profile')
  if (typeof p.sub !== 'string') problems.push('no sub: HTCondor requires it')
  if (typeof p.iat !== 'number') problems.push('no iat')
  if (typeof p.scope !== 'string' || p.scope.trim() === '') problems.push('no scope: HTCondor grants nothing without a condor or compute scope')
  if (p.exp === undefined) problems.push('no exp: scitokens-cpp requires it')
  checkTimes(p, ctx.now, problems, warnings, true)

  let signature: string
  const kid = typeof d.header.kid === 'string' ? d.header.kid : ''
  const jwk = ctx.jwks?.find((k) => k.kid === kid)
  if (!ctx.jwks) signature = 'not checked: no JWKS available'
  else if (!jwk) {
    signature = 'invalid'
    problems.push(`kid "${kid}" is not in the broker's JWKS`)
  } else if (jwk.alg !== alg) {
    signature = 'invalid'
    problems.push(`kid "${kid}" is a ${jwk.alg} key but the token says ${alg}`)
  } else {
    const key = createPublicKey({ key: jwk as webcrypto.JsonWebKey, format: 'jwk' })
    if (verifyAsymmetric(alg, d.signingInput, d.signature, key)) signature = `valid (kid ${kid})`
    else {
      signature = 'invalid'
      problems.push('signature does not verify')
    }
  }
  return { kind: 'scitoken', header: d.header, payload: p, signature, problems, warnings }
}
