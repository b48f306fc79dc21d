import { z } from 'zod'
import { Bool, integer, seconds } from '../lib/config_values.ts'

/**
 * The `iam:` section of the broker configuration: which IAM issuers the broker trusts for inbound
 * subject tokens, and how the broker authenticates to each as its own client (docs/iam-and-wlcg.md §1, §6).
 * Kept here, next to its only consumer; src/config.ts mounts it as `iam`.
 */

const Seconds = seconds()
/** Fractional seconds allowed so tests can use sub-second timeouts; capped so nothing hangs for long. */
const TimeoutSeconds = seconds({ fractional: true, max: 120 })

/**
 * Asymmetric JWS algorithms only: HS* would let anyone holding the IAM public key forge tokens, and `none`
 * is unsigned. WLCG verifiers must support RS256 and ES256 (docs/iam-and-wlcg.md §2.1).
 */
export const IAM_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const

/**
 * Audiences that stand for every relying party: IAM's default `aud` when a client asked for none
 * (docs/iam-and-wlcg.md §1.5) and SciTokens' `ANY`. Expecting one waives the audience check.
 */
const ANY_AUDIENCES: ReadonlySet<string> = new Set(['https://wlcg.cern.ch/jwt/v1/any', 'ANY'])

const StringList = z.union([z.string().min(1), z.array(z.string().min(1))]).transform((v) => (Array.isArray(v) ? v : [v]))

/** How the broker authenticates to an IAM (token exchange, refresh, introspection). IAM ≥1.14.1 enforces the registered method. */
export const IamClientSchema = z.strictObject({
  client_id: z.string().min(1),
  auth_method: z.enum(['client_secret_basic', 'private_key_jwt']).default('client_secret_basic'),
  /** File holding the client secret (mode 0600); for client_secret_basic. */
  client_secret_file: z.string().min(1).optional(),
  /** PKCS#8 PEM private key (mode 0600); for private_key_jwt. RSA keys sign RS256, P-256 keys ES256. */
  private_key_file: z.string().min(1).optional(),
  /** `kid` header of the client assertion, if IAM's registered JWKS has several keys. */
  private_key_kid: z.string().min(1).optional(),
}).superRefine((c, ctx) => {
  if (c.auth_method === 'client_secret_basic' && !c.client_secret_file) {
    ctx.addIssue({ code: 'custom', path: ['client_secret_file'], message: 'client_secret_basic needs client_secret_file' })
  }
  if (c.auth_method === 'private_key_jwt' && !c.private_key_file) {
    ctx.addIssue({ code: 'custom', path: ['private_key_file'], message: 'private_key_jwt needs private_key_file' })
  }
})

export const TrustedIssuerSchema = z.strictObject({
  /** The exact `iss` string seen in tokens, trailing slash included; compared byte for byte, never normalised (§1.2). */
  issuer: z.string().url(),
  /** Discovery document URL; default `<issuer without trailing slash>/.well-known/openid-configuration`. */
  discovery_url: z.string().url().optional(),
  /**
   * Accepted `aud` values (any one must match): the broker's own issuer URL, which clients request from
   * IAM. Absent: `aud` is not checked, which a broker with a public issuer refuses unless allow_any_audience.
   */
  audience: StringList.optional(),
  /**
   * Knowingly accept tokens whatever their `aud` (an IAM that cannot put audiences in tokens): a token a
   * user gave any other service of this IAM can then be exchanged here. Logged as a warning at start-up.
   */
  allow_any_audience: Bool.default(false),
  algorithms: z.array(z.enum(IAM_ALGORITHMS)).min(1).default(['RS256', 'ES256']),
  /** wlcg: require `wlcg.ver` 1.x (the broker client's profile, §1.5); iam: IAM profile; any: no profile check. */
  profile: z.enum(['wlcg', 'iam', 'any']).default('wlcg'),
  /** RFC 7662 introspection: off; opaque (only for non-JWT tokens); always (also for JWTs, to see revocation). Needs `client`. */
  introspection: z.enum(['off', 'opaque', 'always']).default('off'),
  /** Allows http:// for this issuer (development IAM on loopback only). Never set in production. */
  development: Bool.default(false),
  /** The broker's own client at this IAM: outbound exchange, refresh and introspection. */
  client: IamClientSchema.optional(),
}).superRefine((c, ctx) => {
  for (const [key, url] of [['issuer', c.issuer], ['discovery_url', c.discovery_url]] as const) {
    if (url && !url.startsWith('https://') && !(c.development && url.startsWith('http://'))) {
      ctx.addIssue({ code: 'custom', path: [key], message: 'must be an https URL (http:// only with development: true)' })
    }
  }
  c.audience?.forEach((a, i) => {
    if (ANY_AUDIENCES.has(a)) {
      ctx.addIssue({ code: 'custom', path: ['audience', i], message: `"${a}" is in every token IAM minted without an audience, so expecting it accepts tokens meant for any service; name the broker, or set allow_any_audience: true knowingly` })
    }
  })
  if (c.audience && c.allow_any_audience) {
    ctx.addIssue({ code: 'custom', path: ['allow_any_audience'], message: 'give audience or allow_any_audience, not both' })
  }
  if (c.introspection !== 'off' && !c.client) {
    ctx.addIssue({ code: 'custom', path: ['client'], message: 'introspection needs the broker client (IAM requires client authentication)' })
  }
})

export const IamConfigSchema = z.strictObject({
  /** Trusted IAM issuers; empty means no IAM configured (development IAM or CLI-only use). */
  issuers: z.array(TrustedIssuerSchema).default([]),
  /** Bound on each IAM HTTP call (discovery, token, introspection); IAM refresh can take 5–20 s (§1.7). */
  timeout_seconds: TimeoutSeconds.default(10),
  /** Bound on one JWKS fetch. */
  jwks_timeout_seconds: TimeoutSeconds.default(5),
  /** Refresh IAM keys after this long (WLCG: 6 h, §2.3). */
  jwks_cache_seconds: Seconds.default(21600),
  /** Minimum gap between refetches triggered by an unknown `kid`, so random kids cannot make us hammer IAM. */
  jwks_cooldown_seconds: seconds({ min: 0, max: 3600, fractional: true }).default(30),
  /** Keep using the last good keys this long when IAM cannot be reached (WLCG key-cache expiry: 2 d, §2.3). */
  jwks_max_stale_seconds: Seconds.default(172800),
  /** Re-run discovery after this long; a failed re-run keeps the previous metadata. */
  discovery_cache_seconds: Seconds.default(86400),
  /** After a failed discovery, wait this long before asking IAM again (callers get 503 meanwhile). */
  discovery_retry_seconds: seconds({ min: 0, max: 600, fractional: true }).default(5),
  /** Accepted clock difference for exp/nbf/iat (WLCG: 60 s, §2.3); bounded. */
  clock_skew_seconds: seconds({ min: 0, max: 300 }).default(60),
  /** Subject tokens longer than this are refused before any parsing. */
  max_token_bytes: integer(1024, 1048576).default(16384),
  /** Verified-claims cache bound; when full, new tokens are still verified, just not cached. */
  verified_cache_max_entries: integer(0).default(100000),
  /** Introspected tokens are re-checked after this long even if they expire later (revocation). */
  introspection_cache_seconds: seconds({ min: 0, max: 3600 }).default(60),
}).superRefine((c, ctx) => {
  const seen = new Set<string>()
  c.issuers.forEach((i, n) => {
    if (seen.has(i.issuer)) ctx.addIssue({ code: 'custom', path: ['issuers', n, 'issuer'], message: 'duplicate issuer' })
    seen.add(i.issuer)
  })
})

export type IamConfig = z.infer<typeof IamConfigSchema>
export type TrustedIssuerConfig = z.infer<typeof TrustedIssuerSchema>
export type IamClientConfig = z.infer<typeof IamClientSchema>
