/**
 * The DEVELOPMENT IAM: a real OpenID provider (npm `oidc-provider`) on loopback that behaves like INDIGO
 * IAM where the broker can tell (docs/iam-and-wlcg.md §1): IAM's endpoint paths, an issuer with a trailing
 * slash, RS256 JWT access tokens in the WLCG profile, client_credentials, token exchange with IAM's
 * semantics, refresh, client-authenticated introspection and revocation, and a development-only password
 * grant for user tokens. Tokens live in memory. Never for production: secrets and passwords are well known.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import Provider, { type Adapter, type ClientMetadata } from 'oidc-provider'
import { OperatorError } from '../errors.ts'
import { jwkThumbprint } from '../keys/jwk.ts'
import { systemClock, type Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { GRANT, resolveDevIamConfig, type DevIamConfig, type DevIamConfigInput } from './dev_iam_config.ts'
import type { DevIamContext } from './dev_iam_context.ts'
import { authorizationCodeGrant, authorizeMiddleware } from './authorization_code.ts'
import { clientCredentialsGrant } from './grants/client_credentials.ts'
import type { DevIamGrant } from './grants/grant.ts'
import { passwordGrant } from './grants/password.ts'
import { refreshTokenGrant } from './grants/refresh_token.ts'
import { tokenExchangeGrant } from './grants/token_exchange.ts'
import { introspectionMiddleware } from './introspection.ts'
import { WLCG_ANY_AUDIENCE } from './mint_access_token.ts'
import { revocationMiddleware } from './revocation.ts'
import { TokenStore } from './token_store.ts'
import { DEV_IAM_PATHS, devIamIssuer } from './dev_iam_paths.ts'

export { DEV_IAM_PATHS, devIamIssuer }

const GRANTS: readonly DevIamGrant[] = [clientCredentialsGrant, passwordGrant, refreshTokenGrant, tokenExchangeGrant, authorizationCodeGrant]

/** IAM_JWK_CACHE_LIFETIME default: the JWKS carries `Cache-Control: max-age=21600`. */
const JWK_MAX_AGE_SECONDS = 21_600

export interface DevIamOptions {
  /** Listen port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number
  /** Loopback address to bind; anything else is refused. Default 127.0.0.1. */
  host?: string
  /** PEM certificate and key: serve HTTPS (e.g. the broker's dev certificate, valid for 127.0.0.1). Plain HTTP otherwise. */
  tls?: { cert: string | Buffer; key: string | Buffer }
  /** Clients, users and exchange policies; defaultDevIamConfig() when omitted. */
  config?: DevIamConfigInput
  /** Set by the caller when the broker runs with a production configuration: the development IAM then refuses to start. */
  production?: boolean
  log?: Logger
  clock?: Clock
  /**
   * `aud` when a client requests no audience. IAM puts the WLCG "any" audience there (the default);
   * `serve` sets its own issuer, so the tokens of the development setup are minted for the broker and
   * the broker can insist on that audience as a production one must.
   */
  defaultAudience?: string
  /** Upper bound on held tokens (access + refresh); oldest are forgotten first. */
  maxTokens?: number
}

export interface RunningDevIam {
  /** Exact issuer, with IAM's trailing slash, e.g. http://127.0.0.1:40123/ */
  issuer: string
  discoveryUrl: string
  jwksUri: string
  tokenEndpoint: string
  introspectionEndpoint: string
  revocationEndpoint: string
  port: number
  /** The resolved configuration (client secrets and user passwords included: development only). */
  config: DevIamConfig
  close(): Promise<void>
}

/** Does nothing and holds nothing: every token lives in the TokenStore; no oidc-provider model is ever saved. */
class UnusedAdapter implements Adapter {
  async upsert(): Promise<void> { throw new Error('the development IAM does not persist oidc-provider models') }
  async find(): Promise<undefined> { return undefined }
  async findByUserCode(): Promise<undefined> { return undefined }
  async findByUid(): Promise<undefined> { return undefined }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host)
}

function signingKeyPair(): { privateKey: KeyObject; kid: string; jwk: Record<string, unknown> } {
  // RS256 as IAM's default key `rsa1`; the kid is the RFC 7638 thumbprint so a restarted development IAM
  // (new key) never reuses a kid a verifier has cached.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const kid = jwkThumbprint(publicKey)
  return { privateKey, kid, jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } }
}

/**
 * Starts the development IAM on loopback and resolves once it accepts connections.
 * @example
 * const iam = await startDevIam({ port: 0 })
 * // iam.issuer === 'http://127.0.0.1:40123/'
 * await iam.close()
 */
export async function startDevIam(options: DevIamOptions = {}): Promise<RunningDevIam> {
  if (options.production) throw new OperatorError('EDEVIAM', 'the development IAM refuses to start with a production configuration; configure a real INDIGO IAM')
  const host = options.host ?? '127.0.0.1'
  if (!isLoopback(host)) throw new OperatorError('EDEVIAM', `the development IAM listens on loopback only, not ${host}`)
  const config = resolveDevIamConfig(options.config)
  const clock = options.clock ?? systemClock

  let handler: Parameters<typeof createHttpServer>[1] = (_req, res) => { res.statusCode = 503; res.end() }
  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => handler!(req, res))
    : createHttpServer((req, res) => handler!(req, res))
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new OperatorError('ELISTEN', `development IAM cannot listen on ${host}:${options.port ?? 0}: ${err.code ?? err.message}`)))
    server.listen(options.port ?? 0, host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const issuer = devIamIssuer(port, host, Boolean(options.tls))

  const key = signingKeyPair()
  const dev: DevIamContext = {
    issuer, config, clock, signingKey: key.privateKey, kid: key.kid, defaultAudience: options.defaultAudience ?? WLCG_ANY_AUDIENCE,
    clients: new Map(config.clients.map((c) => [c.client_id, c])),
    users: new Map(config.users.map((u) => [u.username, u])),
    store: new TokenStore(options.maxTokens),
    codes: new Map(),
  }

  const clients: ClientMetadata[] = config.clients.map((c) => ({
    client_id: c.client_id, client_secret: c.client_secret, token_endpoint_auth_method: c.token_endpoint_auth_method,
    grant_types: c.grant_types,
    // oidc-provider drops the authorization_code grant from a client without the code response type.
    response_types: c.grant_types.includes(GRANT.authorizationCode) ? ['code'] : [], redirect_uris: c.redirect_uris,
  }))
  const allScopes = [...new Set(config.clients.flatMap((c) => c.scopes))]
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [key.jwk] },
    adapter: UnusedAdapter,
    scopes: allScopes,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    // 'code' only so clients may hold the authorization_code grant; /authorize itself is ours (authorization_code.ts).
    responseTypes: ['code', 'none'],
    routes: { jwks: `/${DEV_IAM_PATHS.jwks}`, token: `/${DEV_IAM_PATHS.token}`, authorization: `/${DEV_IAM_PATHS.authorization}`, userinfo: '/userinfo' },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
    },
    discovery: {
      introspection_endpoint: `${issuer}${DEV_IAM_PATHS.introspection}`,
      revocation_endpoint: `${issuer}${DEV_IAM_PATHS.revocation}`,
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    },
  })
  for (const g of GRANTS) provider.registerGrantType(g.grantType, g.handler(dev), g.parameters, g.repeatable)
  // Served where discovery says they are; /authorize before oidc-provider's own route sees it.
  provider.use(authorizeMiddleware(dev, `/${DEV_IAM_PATHS.authorization}`))
  provider.use(introspectionMiddleware(dev, `/${DEV_IAM_PATHS.introspection}`))
  provider.use(revocationMiddleware(dev, `/${DEV_IAM_PATHS.revocation}`))
  provider.use(async (ctx, next) => {
    await next()
    if (ctx.path === `/${DEV_IAM_PATHS.jwks}` && ctx.status === 200) ctx.set('Cache-Control', `max-age=${JWK_MAX_AGE_SECONDS}`)
  })
  // oidc-provider reports internal errors through events; surface them (never the request body: it holds secrets).
  provider.on('server_error', (_ctx, err) => options.log?.error('development IAM internal error', { err }))
  handler = provider.callback()

  options.log?.warn('DEVELOPMENT IAM started: well-known client secrets and user passwords, password grant, in-memory tokens; NOT FOR PRODUCTION', {
    issuer, clients: config.clients.map((c) => c.client_id), users: config.users.map((u) => u.username),
  })

  return {
    issuer,
    discoveryUrl: `${issuer}${DEV_IAM_PATHS.discovery}`,
    jwksUri: `${issuer}${DEV_IAM_PATHS.jwks}`,
    tokenEndpoint: `${issuer}${DEV_IAM_PATHS.token}`,
    introspectionEndpoint: `${issuer}${DEV_IAM_PATHS.introspection}`,
    revocationEndpoint: `${issuer}${DEV_IAM_PATHS.revocation}`,
    port,
    config,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    }),
  }
}
