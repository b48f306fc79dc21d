/**
 * An msw stand-in for INDIGO IAM at the HTTP edge (discovery, JWKS, token, introspection, revocation),
 * with IAM's semantics where the broker depends on them (docs/iam-and-wlcg.md §1.4–§1.5): token exchange
 * only of tokens it issued, scope required, refused scopes dropped silently, refresh tokens that may
 * rotate and become single-use, client authentication checked (client_secret_basic or private_key_jwt).
 *
 * Everything goes through `globalThis.fetch`, which msw patches; `onUnhandledFrame: 'error'` (msw 3's name for onUnhandledRequest) means no
 * request can reach the network.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, jwtVerify, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import { delay, http, HttpResponse } from 'msw'
import { setupServer, type SetupServer } from 'msw/node'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { IamConfigSchema, type IamConfig } from '../../src/iam/iam_config.ts'
import type { IamFetch } from '../../src/iam/iam_fetch.ts'

export type Fault = 'ok' | 'down' | 'slow' | 'badjson' | 'http500'
export type SigningAlg = 'RS256' | 'ES256'

interface SigningKey {
  kid: string
  alg: SigningAlg
  privateKey: CryptoKey
  publicKey: CryptoKey
  publicJwk: JWK
}

async function newSigningKey(alg: SigningAlg): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const kid = `${alg === 'RS256' ? 'rsa' : 'ec'}-${randomBytes(4).toString('hex')}`
  return { kid, alg, privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
}

export interface TestIamOptions {
  /** Exact issuer string; default `https://iam.test.example/` (with IAM's trailing slash). */
  issuer?: string
  alg?: SigningAlg
  /** The `issuer` the discovery document states; default the issuer itself. */
  discoveryIssuer?: string
  /** The broker's client at this IAM. */
  brokerClientId?: string
  brokerClientSecret?: string
  /** Verify private_key_jwt assertions with this public key instead of the secret. */
  brokerClientPublicKey?: CryptoKey
}

/** Counters of requests per endpoint, for "no network on cache hit" assertions. */
export interface RequestCounts {
  discovery: number
  jwks: number
  token: number
  introspection: number
  revocation: number
}

export class TestIam {
  readonly issuer: string
  readonly base: string
  readonly discoveryUrl: string
  readonly jwksUri: string
  readonly tokenEndpoint: string
  readonly introspectionEndpoint: string
  readonly revocationEndpoint: string
  readonly brokerClientId: string
  readonly brokerClientSecret: string
  brokerClientPublicKey: CryptoKey | undefined
  discoveryIssuer: string

  /** Keys published at the JWKS; the first signs new tokens. */
  keys: SigningKey[]
  counts: RequestCounts = { discovery: 0, jwks: 0, token: 0, introspection: 0, revocation: 0 }
  /** Faults per endpoint. */
  faults: { discovery: Fault; jwks: Fault; token: Fault; introspection: Fault } = { discovery: 'ok', jwks: 'ok', token: 'ok', introspection: 'ok' }
  /** How long 'slow' waits before answering. */
  slowMs = 5_000
  /** Scopes IAM's policies refuse: dropped from exchange results without an error, like IAM's scope policies (§1.4). */
  refusedScopes = new Set<string>()
  /** IAM may rotate refresh tokens and make the old one single-use (§1.4, IAM #707). */
  rotateRefreshTokens = true
  /** IAM may add `wlcg.groups` to the granted scopes when a `wlcg.groups:/g` scope was asked for (WLCG §2.2). */
  addGroupsScope = false
  /** RFC 6749 §5.1 makes `expires_in` only RECOMMENDED: an IAM may leave it out (the JWT's `exp` still says). */
  omitExpiresIn = false
  /** Access-token lifetime IAM gives exchanged tokens (the broker client's setting, §1.4). */
  exchangedLifetime = 3600
  /** Every token-endpoint request body, for assertions. */
  tokenRequests: URLSearchParams[] = []
  /** Client authentication method seen on token requests. */
  tokenAuthMethods: string[] = []
  /** This IAM's clock (epoch seconds) for the tokens it mints; tests that move the broker's clock move this one too. */
  now: () => number = () => Math.floor(Date.now() / 1000)
  /**
   * Group membership as IAM holds it now, by `sub`: tokens issued to the broker for that user (exchange,
   * refresh) carry these as `wlcg.groups`. Unset: a refresh carries the groups of the token the refresh
   * token was exchanged from.
   */
  userGroups = new Map<string, string[]>()
  /** Users IAM has suspended or removed, by `sub`: their refresh tokens are refused (`invalid_grant`). */
  suspended = new Set<string>()

  /**
   * OpenID Connect RP-Initiated Logout 1.0: when set, discovery advertises `end_session_endpoint` at
   * `<base>/logout` (INDIGO IAM's MITREid base names it so; whether an IAM advertises it depends on its version),
   * or at the URL given.
   */
  endSession: boolean | string = false
  /** Authorization codes handed out by issueCode, redeemable once at the token endpoint. */
  readonly #codes = new Map<string, { sub: string; nonce: string; codeChallenge: string; redirectUri: string; claims: Record<string, unknown> }>()
  /** ID tokens the token endpoint answered codes with, for assertions on id_token_hint. */
  idTokens: string[] = []

  /** Access tokens this IAM "holds in its token store" (exchange and introspection only know these). */
  readonly #issued = new Map<string, JWTPayload>()
  /** Live refresh tokens → grant. */
  readonly #refreshTokens = new Map<string, { sub: string; scopes: string[]; aud: string[]; groups?: unknown }>()

  private constructor(o: TestIamOptions, keys: SigningKey[]) {
    this.issuer = o.issuer ?? 'https://iam.test.example/'
    this.base = this.issuer.replace(/\/$/, '')
    this.discoveryIssuer = o.discoveryIssuer ?? this.issuer
    this.discoveryUrl = `${this.base}/.well-known/openid-configuration`
    this.jwksUri = `${this.base}/jwk`
    this.tokenEndpoint = `${this.base}/token`
    this.introspectionEndpoint = `${this.base}/introspect`
    this.revocationEndpoint = `${this.base}/revoke`
    this.brokerClientId = o.brokerClientId ?? 'condor-token-broker'
    this.brokerClientSecret = o.brokerClientSecret ?? 'broker-secret-at-iam'
    this.brokerClientPublicKey = o.brokerClientPublicKey
    this.keys = keys
  }

  static async create(o: TestIamOptions = {}): Promise<TestIam> {
    return new TestIam(o, [await newSigningKey(o.alg ?? 'RS256')])
  }

  get signingKey(): SigningKey {
    return this.keys[0]!
  }

  /** IAM key rotation: a new key with a new kid signs from now on; the JWKS publishes only the new key unless `keepOld`. */
  async rotate(options: { keepOld?: boolean; alg?: SigningAlg } = {}): Promise<SigningKey> {
    const next = await newSigningKey(options.alg ?? this.signingKey.alg)
    this.keys = options.keepOld ? [next, ...this.keys] : [next]
    return next
  }

  /** PEM of the current public key (for the "HS256 with the public key as secret" attack). */
  async publicKeyPem(): Promise<string> {
    return exportSPKI(this.signingKey.publicKey)
  }

  /** A WLCG-profile access token as IAM mints it (§1.5), held in the token store unless `unstored`. */
  async mint(claims: Record<string, unknown> = {}, o: { key?: SigningKey; header?: Record<string, unknown>; unstored?: boolean; omit?: string[] } = {}): Promise<string> {
    const now = this.now()
    const payload: Record<string, unknown> = {
      iss: this.issuer,
      sub: randomUUID(),
      aud: 'https://wlcg.cern.ch/jwt/v1/any',
      'wlcg.ver': '1.0',
      scope: 'openid compute.read compute.create',
      'wlcg.groups': ['/cms', '/cms/pilots'],
      client_id: 'user-facing-client',
      jti: randomUUID(),
      iat: now,
      nbf: now,
      exp: now + 3600,
      ...claims,
    }
    for (const c of o.omit ?? []) delete payload[c]
    const key = o.key ?? this.signingKey
    const token = await new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt', ...o.header }).sign(key.privateKey)
    if (!o.unstored) this.#issued.set(token, payload)
    return token
  }

  /**
   * What IAM's /authorize does once the user has signed in: a one-time code for `sub`, bound to the
   * authorization request's nonce, PKCE challenge (S256) and redirect URI (OpenID Connect Core §3.1.2;
   * RFC 7636 §4.6). `claims` go into the access token.
   */
  issueCode(authorizeUrl: URL, sub: string, claims: Record<string, unknown> = {}): string {
    const q = authorizeUrl.searchParams
    const code = randomBytes(16).toString('base64url')
    this.#codes.set(code, { sub, nonce: q.get('nonce') ?? '', codeChallenge: q.get('code_challenge') ?? '', redirectUri: q.get('redirect_uri') ?? '', claims })
    return code
  }

  /** An opaque (non-JWT) access token this IAM knows, with the given claims for introspection. */
  mintOpaque(claims: Record<string, unknown> = {}): string {
    const now = this.now()
    const token = randomBytes(24).toString('base64url')
    this.#issued.set(token, { iss: this.issuer, sub: randomUUID(), scope: 'compute.read', jti: randomUUID(), iat: now, exp: now + 3600, client_id: 'user-facing-client', ...claims })
    return token
  }

  /** IAM revokes an access token (introspection then says active: false). */
  revoke(token: string): void {
    this.#issued.delete(token)
  }

  /** Forgets every refresh token (between tests). */
  clearRefreshTokens(): void {
    this.#refreshTokens.clear()
  }

  get liveRefreshTokens(): string[] {
    return [...this.#refreshTokens.keys()]
  }

  discoveryDocument(): Record<string, unknown> {
    return {
      issuer: this.discoveryIssuer,
      authorization_endpoint: `${this.base}/authorize`,
      token_endpoint: this.tokenEndpoint,
      jwks_uri: this.jwksUri,
      introspection_endpoint: this.introspectionEndpoint,
      revocation_endpoint: this.revocationEndpoint,
      userinfo_endpoint: `${this.base}/userinfo`,
      grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      id_token_signing_alg_values_supported: ['RS256', 'ES256'],
      scopes_supported: ['openid', 'offline_access', 'wlcg', 'compute.read', 'compute.create', 'compute.modify', 'compute.cancel'],
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      ...(this.endSession ? { end_session_endpoint: typeof this.endSession === 'string' ? this.endSession : `${this.base}/logout` } : {}),
    }
  }

  handlers() {
    const json = (body: unknown, init?: ResponseInit) => HttpResponse.json(body as Record<string, unknown>, init)
    return [
      http.get(this.discoveryUrl, async () => {
        this.counts.discovery++
        return (await this.#fault(this.faults.discovery)) ?? json(this.discoveryDocument())
      }),
      http.get(this.jwksUri, async () => {
        this.counts.jwks++
        return (await this.#fault(this.faults.jwks)) ?? json({ keys: this.keys.map((k) => k.publicJwk) }, { headers: { 'cache-control': 'max-age=21600' } })
      }),
      http.post(this.tokenEndpoint, async ({ request }) => {
        this.counts.token++
        const faulted = await this.#fault(this.faults.token)
        if (faulted) return faulted
        const body = new URLSearchParams(await request.text())
        this.tokenRequests.push(body)
        if (!(await this.#clientAuthenticated(request, body))) return json({ error: 'invalid_client', error_description: 'Bad client credentials' }, { status: 401 })
        return this.#tokenEndpoint(body)
      }),
      http.post(this.introspectionEndpoint, async ({ request }) => {
        this.counts.introspection++
        const faulted = await this.#fault(this.faults.introspection)
        if (faulted) return faulted
        const body = new URLSearchParams(await request.text())
        if (!(await this.#clientAuthenticated(request, body))) return json({ error: 'invalid_client' }, { status: 401 })
        const claims = this.#issued.get(body.get('token') ?? '')
        if (!claims || (typeof claims.exp === 'number' && claims.exp < this.now())) return json({ active: false })
        // IAM's introspection answer (§1.5): no wlcg.ver; groups as `groups`, user as `username`.
        const { 'wlcg.groups': groups, ...rest } = claims as Record<string, unknown>
        return json({ active: true, ...rest, ...(groups ? { groups } : {}), token_type: 'Bearer' })
      }),
      http.post(this.revocationEndpoint, async ({ request }) => {
        this.counts.revocation++
        const body = new URLSearchParams(await request.text())
        this.#refreshTokens.delete(body.get('token') ?? '')
        return new HttpResponse(null, { status: 200 })
      }),
    ]
  }

  async #fault(f: Fault): Promise<Response | undefined> {
    switch (f) {
      case 'ok': return undefined
      case 'down': return HttpResponse.error()
      case 'slow':
        await delay(this.slowMs)
        return HttpResponse.json({ error: 'too late' }, { status: 504 })
      case 'badjson': return new HttpResponse('{"issuer": "https://iam', { headers: { 'content-type': 'application/json' } })
      case 'http500': return new HttpResponse('<html>Internal Server Error</html>', { status: 500, headers: { 'content-type': 'text/html' } })
    }
  }

  async #clientAuthenticated(request: Request, body: URLSearchParams): Promise<boolean> {
    const authz = request.headers.get('authorization')
    if (authz?.startsWith('Basic ')) {
      const [id, secret] = Buffer.from(authz.slice(6), 'base64').toString('utf8').split(':').map((s) => decodeURIComponent(s.replace(/\+/g, ' ')))
      this.tokenAuthMethods.push('client_secret_basic')
      return id === this.brokerClientId && secret === this.brokerClientSecret
    }
    const assertion = body.get('client_assertion')
    if (assertion && body.get('client_assertion_type') === 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' && this.brokerClientPublicKey) {
      this.tokenAuthMethods.push('private_key_jwt')
      try {
        // MITREid (IAM) accepts the issuer or the token endpoint as assertion audience.
        await jwtVerify(assertion, this.brokerClientPublicKey, { issuer: this.brokerClientId, subject: this.brokerClientId, audience: [this.discoveryIssuer, this.tokenEndpoint] })
        return true
      } catch {
        return false
      }
    }
    return false
  }

  async #tokenEndpoint(body: URLSearchParams): Promise<Response> {
    const error = (error: string, description: string, status = 400) => HttpResponse.json({ error, error_description: description }, { status })
    const requested = (body.get('scope') ?? '').split(' ').filter(Boolean)
    const aud = (body.get('resource') || body.get('aud') || body.get('audience') || '').split(' ').filter(Boolean)
    const grantType = body.get('grant_type')
    let sub: string
    let offline = false
    let subjectGroups: unknown
    if (grantType === 'urn:ietf:params:oauth:grant-type:token-exchange') {
      const subject = this.#issued.get(body.get('subject_token') ?? '')
      if (!subject) return error('invalid_token', 'Invalid subject token')
      if (requested.length === 0) return error('invalid_request', 'The scope parameter is required for a token exchange request!')
      sub = String(subject.sub)
      subjectGroups = (subject as Record<string, unknown>)['wlcg.groups']
      offline = requested.includes('offline_access')
    } else if (grantType === 'authorization_code') {
      return this.#redeemCode(body)
    } else if (grantType === 'refresh_token') {
      const rt = body.get('refresh_token') ?? ''
      const grant = this.#refreshTokens.get(rt)
      if (!grant) return error('invalid_grant', 'Invalid refresh token')
      sub = grant.sub
      if (this.suspended.has(sub)) return error('invalid_grant', 'User account is disabled')
      if (requested.some((s) => !grant.scopes.includes(s))) return error('invalid_scope', 'Up-scoping is not allowed.')
      if (this.rotateRefreshTokens) {
        this.#refreshTokens.delete(rt)
        const next = randomBytes(32).toString('base64url')
        this.#refreshTokens.set(next, grant)
        const r = await this.#issue(sub, requested.filter((s) => !this.refusedScopes.has(s)), aud, grant.groups)
        return HttpResponse.json({ ...r, refresh_token: next })
      }
      return HttpResponse.json(await this.#issue(sub, requested.filter((s) => !this.refusedScopes.has(s)), aud, grant.groups))
    } else {
      return error('unsupported_grant_type', 'unsupported grant type')
    }
    // IAM's user scope policies drop refused scopes silently (§1.4).
    const granted = requested.filter((s) => !this.refusedScopes.has(s))
    if (this.addGroupsScope && granted.some((s) => s.startsWith('wlcg.groups:')) && !granted.includes('wlcg.groups')) granted.push('wlcg.groups')
    const r: Record<string, unknown> = await this.#issue(sub, granted, aud)
    if (offline && granted.includes('offline_access')) {
      const rt = randomBytes(32).toString('base64url')
      this.#refreshTokens.set(rt, { sub, scopes: granted, aud, ...(subjectGroups !== undefined ? { groups: subjectGroups } : {}) })
      r.refresh_token = rt
    }
    return HttpResponse.json(r)
  }

  /** RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6): the access token and an ID token (OpenID Connect Core §3.1.3.3). */
  async #redeemCode(body: URLSearchParams): Promise<Response> {
    const code = this.#codes.get(body.get('code') ?? '')
    this.#codes.delete(body.get('code') ?? '')
    const verifier = body.get('code_verifier') ?? ''
    if (!code || code.redirectUri !== body.get('redirect_uri') || createHash('sha256').update(verifier).digest('base64url') !== code.codeChallenge) {
      return HttpResponse.json({ error: 'invalid_grant', error_description: 'Invalid authorization code' }, { status: 400 })
    }
    const now = this.now()
    const accessToken = await this.mint({ sub: code.sub, scope: 'openid profile wlcg.groups', client_id: this.brokerClientId, ...code.claims })
    const idToken = await new SignJWT({ iss: this.discoveryIssuer, sub: code.sub, aud: this.brokerClientId, nonce: code.nonce, iat: now, exp: now + 3600 })
      .setProtectedHeader({ alg: this.signingKey.alg, kid: this.signingKey.kid }).sign(this.signingKey.privateKey)
    this.idTokens.push(idToken)
    return HttpResponse.json({ access_token: accessToken, token_type: 'Bearer', expires_in: 3600, scope: 'openid profile wlcg.groups', id_token: idToken })
  }

  async #issue(sub: string, scopes: string[], aud: string[], grantGroups?: unknown): Promise<Record<string, unknown>> {
    const groups = this.userGroups.get(sub) ?? grantGroups
    const token = await this.mint({
      sub,
      ...(groups !== undefined ? { 'wlcg.groups': groups } : {}),
      scope: scopes.join(' '),
      aud: aud.length > 0 ? aud : 'https://wlcg.cern.ch/jwt/v1/any',
      client_id: this.brokerClientId,
      act: { sub: this.brokerClientId },
      exp: this.now() + this.exchangedLifetime,
    })
    return {
      access_token: token,
      token_type: 'Bearer',
      ...(this.omitExpiresIn ? {} : { expires_in: this.exchangedLifetime }),
      scope: scopes.join(' '),
      issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    }
  }
}

/**
 * Starts msw for the given IAMs for the current test file: `onUnhandledFrame: 'error'`, handlers reset
 * after each test (so `server.use()` overrides do not leak).
 */
export function useMswIam(...iams: TestIam[]): SetupServer {
  const server = setupServer(...iams.flatMap((i) => i.handlers()))
  beforeAll(() => server.listen({ onUnhandledFrame: 'error' }))
  afterEach(() => server.resetHandlers())
  afterAll(() => server.close())
  return server
}

/** The global fetch, looked up per call so msw's patch is always the one used. */
export const mswFetch: IamFetch = (url, init) => globalThis.fetch(url, init)

/** An `iam:` config section for the given test IAM(s), parsed by the real schema. */
export function iamConfigFor(iams: TestIam | TestIam[], overrides: Record<string, unknown> = {}, issuerOverrides: Record<string, unknown> = {}): IamConfig {
  const list = Array.isArray(iams) ? iams : [iams]
  return IamConfigSchema.parse({
    issuers: list.map((i) => ({
      issuer: i.issuer,
      client: { client_id: i.brokerClientId, auth_method: 'client_secret_basic', client_secret_file: `/secrets/${i.brokerClientId}` },
      ...issuerOverrides,
    })),
    timeout_seconds: 2,
    jwks_timeout_seconds: 2,
    discovery_retry_seconds: 0,
    ...overrides,
  })
}

/** Secret-file reader for tests: every IAM's broker secret, by the path iamConfigFor uses. */
export function secretReader(...iams: TestIam[]): (path: string) => Buffer {
  return (path) => {
    const iam = iams.find((i) => path === `/secrets/${i.brokerClientId}`)
    if (!iam) throw new Error(`no test secret at ${path}`)
    return Buffer.from(`${iam.brokerClientSecret}\n`)
  }
}

/** Makes a broker private_key_jwt key pair and its PKCS#8 PEM. */
export async function brokerClientKeyPair(alg: SigningAlg = 'ES256'): Promise<{ privatePem: string; publicKey: CryptoKey }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  return { privatePem: await exportPKCS8(privateKey), publicKey }
}

/** Base64url of JSON, for hand-built (unsigned or forged) tokens. */
export function b64json(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url')
}
