import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { isIPv6, type AddressInfo } from 'node:net'
import { getRequestListener, serve } from '@hono/node-server'
import type { Hono } from 'hono'
import { createApp } from './app.ts'
import type { Config } from './config.ts'
import { OperatorError } from './errors.ts'
import { freePort } from './lib/free_port.ts'
import type { Exchange } from './http/routes/token.ts'
import { applyListenerLimits, listenerServerOptions } from './http/listener_limits.ts'
import { addressKeyer } from './ratelimit/address_key.ts'
import { ListenerDrain, type DrainResult } from './http/drain.ts'
import type { KeyReloadResult } from './keys/reload_keys.ts'
import { answerClientErrors, vaultParserRefusal } from './http/client_error.ts'
import { readOneHeaderLineMore, refuseExtraHeaderLines } from './http/header_line_limit.ts'
import { refuseBadHost } from './http/host_field_lines.ts'
import { tokenFastPath, type NodeRequestHandler } from './http/token_fast_path.ts'
import { adapterErrorAnswer, vaultAdapterErrorAnswer } from './http/adapter_error.ts'
import { buildServices, type BrokerServices, type StopReport } from './services.ts'
import { systemClock, type Clock } from './lib/clock.ts'
import type { Logger } from './lib/logger.ts'
import { accessLog } from './http/access_log.ts'
import { createVaultApp } from './http/vault_app.ts'
import { readTlsFiles, reloadTls, type TlsReloadResult } from './tls/tls_files.ts'
import { isProduction } from './production.ts'

export interface RunningBroker {
  /** Where the listener is reachable, e.g. https://127.0.0.1:8443 */
  url: string
  port: number
  /** The development CA file when tls.mode is auto. */
  devCaFile?: string
  /** Where the Vault-compatible listener is reachable, when credentials.vault.enabled. */
  vaultUrl?: string
  /** The services behind the listener (development IAM handle, store, policy), for the demo and tests. */
  services: BrokerServices
  /**
   * Stops accepting, lets requests in flight finish for at most `graceMs` (default: the config's
   * shutdown_grace_seconds), closes what is left, then flushes and closes the services (audit included),
   * abandoning what the audit database still holds after STORE_STOP_MS.
   */
  close(options?: { graceMs?: number }): Promise<DrainResult & StopReport>
  /** SIGHUP: takes up the signing keys and the TLS certificate on disk; each keeps the old one on failure. */
  reload(trigger: string): Promise<{ keys: KeyReloadResult; tls: TlsReloadResult }>
}

export type { TlsReloadResult }

/** Composition root for `serve`: services, TLS, app, listener. */
export async function startBroker(initial: Config, options: { log: Logger; clock?: Clock }): Promise<RunningBroker> {
  const clock = options.clock ?? systemClock
  const { log } = options
  const services = await buildServices(await withConcretePort(initial), { log, clock })
  try {
    return await listen(services, log)
  } catch (err) {
    await services.close()
    throw err
  }
}

/**
 * With an ephemeral port (0) and no configured issuer, the default issuer would name port 0: choose the
 * port first so `iss`, discovery and the listener agree. Development and tests only; production sets `issuer`.
 */
async function withConcretePort(config: Config): Promise<Config> {
  if (config.listen.port !== 0 || !config.issuerDefaulted) return config
  const port = await freePort(config.listen.host)
  return { ...config, listen: { ...config.listen, port }, issuer: `https://localhost:${port}` }
}

async function listen(services: BrokerServices, log: Logger): Promise<RunningBroker> {
  const { config, keys, store } = services
  const app = createApp({
    config, keys, log,
    readiness: services.readiness,
    iamStatus: services.iamStatus,
    // Fixed words, as /readyz gives: /healthz needs no token, and the thread's own error can name the
    // database file. serve logs the detail as it stops (docs/audit.md).
    liveness: () => (store.writeHealth().stopped === undefined ? undefined : 'the audit writer thread has stopped'),
    exchange: services.exchange,
    admin: { audit: store, revocations: services.revocations, authenticators: services.adminAuthenticators, policy: services.policy, limits: services.limits },
    ...(services.metrics ? { metrics: { page: () => services.metrics!.render(), auth: services.metricsAuth } } : {}),
    ...(services.certificates ? { certificates: services.certificates } : {}),
    ...(services.console ? { console: services.console } : {}),
    ...(services.credentials ? { credentials: services.credentials } : {}),
  })

  let tls: { cert: Buffer; key: Buffer } | undefined
  let devCaFile: string | undefined
  let tlsFiles: { certFile: string; keyFile: string } | undefined
  if (config.tls.mode === 'auto') {
    // Loaded only for tls.mode auto: @peculiar/x509 and its ASN.1 stack cost ~15 MB resident otherwise idle.
    const { ensureDevTls } = await import('./tls/dev_ca.ts')
    const dev = await ensureDevTls(`${config.data_dir}/tls`)
    devCaFile = dev.caFile
    tlsFiles = dev
    tls = readTlsFiles(dev.certFile, dev.keyFile)
    log.warn('serving with a DEVELOPMENT certificate; not for production', { ca: dev.caFile, cert: dev.certFile, created: dev.created })
  } else if (config.tls.mode === 'files') {
    tlsFiles = { certFile: config.tls.cert_file!, keyFile: config.tls.key_file! }
    tls = readTlsFiles(tlsFiles.certFile, tlsFiles.keyFile)
  }

  const drain = new ListenerDrain()
  const listener = drain.wrap(refuseExtraHeaderLines(config.http.max_headers_count, brokerRequestListener(app, services.exchange, log, { hostname: config.listen.host, logRequests: config.log.requests })))
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch, port: config.listen.port, hostname: config.listen.host,
        createServer: ((options: object) => tls
          ? createHttpsServer(options, listener)
          : createHttpServer(options, listener)) as never,
        serverOptions: { ...listenerServerOptions(config.http), ...tls, ServerResponse: drain.ServerResponse },
      },
      () => resolve(s),
    )
    applyListenerLimits(s as Server, config.http, addressKeyer(config.rate_limits.address.ipv6_prefix))
    readOneHeaderLineMore(s as Server, config.http.max_headers_count)
    answerClientErrors(s as Server)
    drain.attach(s as Server)
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(new OperatorError('ELISTEN', `cannot listen on ${config.listen.host}:${config.listen.port}: ${err.code ?? err.message}`)))
  })
  const port = (server.address() as AddressInfo).port
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host
  const url = `${tls ? 'https' : 'http'}://${host}:${port}`
  let vault: { server: Server; url: string; drain: ListenerDrain } | undefined
  if (services.credentials && config.credentials.vault.enabled) {
    try {
      vault = await listenVault(services, tls, log)
    } catch (err) {
      await drain.drain(server as Server, 0)
      throw err
    }
  }
  log.info('condor-token-broker listening', { url, issuer: config.issuer, trust_domain: config.trust_domain, config: config.source, iam: config.iam.issuers.map((i) => i.issuer) })
  return {
    url,
    port,
    ...(devCaFile ? { devCaFile } : {}),
    services,
    ...(vault ? { vaultUrl: vault.url } : {}),
    close: async (options = {}) => {
      // Both listeners drain together within the one grace: a credmon's fetch in flight is answered, not reset.
      const graceMs = options.graceMs ?? config.shutdown_grace_seconds * 1000
      const [result, vaultResult] = await Promise.all([
        drain.drain(server as Server, graceMs),
        vault ? vault.drain.drain(vault.server, graceMs) : { forced: 0 },
      ])
      result.forced += vaultResult.forced
      // After the listener: the last requests' audit records and the refusal tally's aggregate are written
      // before the store closes.
      const stop = await services.close()
      return { ...result, ...stop }
    },
    // The Vault-compatible listener serves the same certificate: it is renewed with the main one.
    reload: async (trigger) => {
      const keys = await services.reloadKeys(trigger)
      const tls = reloadTls([server as Server, ...(vault ? [vault.server] : [])], tlsFiles, log, trigger, { production: isProduction(config) })
      // Counted only where there are files to reload (not with tls.mode off).
      if (tlsFiles) services.metrics?.reloaded('tls', tls.ok)
      return { keys, tls }
    },
  }
}

/**
 * The Vault-compatible listener for HTCondor's Vault credmon: a second socket (port 8200 by default, the
 * only one that credmon accepts) with the main listener's certificate, serving only the one read path.
 */
async function listenVault(services: BrokerServices, tls: { cert: Buffer; key: Buffer } | undefined, log: Logger): Promise<{ server: Server; url: string; drain: ListenerDrain }> {
  const { config } = services
  const v = config.credentials.vault
  const app = createVaultApp({ store: services.store, jobTokens: services.credentials!.jobTokens, log, limits: services.limits, ...(services.metrics ? { metrics: services.metrics } : {}) })
  const drain = new ListenerDrain()
  const listener = drain.wrap(vaultRequestListener(app, config.http.max_headers_count, log, { hostname: v.host, metrics: services.metrics }))
  const options = { ...listenerServerOptions(config.http), ServerResponse: drain.ServerResponse }
  const server: Server = tls ? createHttpsServer({ ...options, ...tls }, listener) as unknown as Server : createHttpServer(options, listener)
  applyListenerLimits(server, config.http, addressKeyer(config.rate_limits.address.ipv6_prefix))
  readOneHeaderLineMore(server, config.http.max_headers_count)
  drain.attach(server)
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new OperatorError('ELISTEN', `cannot listen on ${v.host}:${v.port} (Vault-compatible): ${err.code ?? err.message}`)))
    server.listen(v.port, v.host, () => resolve())
  })
  const host = v.host.includes(':') ? `[${v.host}]` : v.host
  const url = `${tls ? 'https' : 'http'}://${host}:${(server.address() as AddressInfo).port}`
  log.info('Vault-compatible credential listener', { url })
  return { server, url, drain }
}

/**
 * What `serve` answers requests with: POST /token on the fast path, everything else through the hono app,
 * both behind the refusal of a repeated or invalid Host (host_field_lines.ts). Exported so the conformance suite runs through exactly this listener, on a real socket.
 */
export function brokerRequestListener(
  app: Hono, exchange: Exchange, log: Logger,
  options: { hostname?: string; overrideGlobalObjects?: boolean; logRequests?: boolean } = {},
): RequestListener {
  const { logRequests = false, hostname, ...honoOptions } = options
  const adapter = getRequestListener(app.fetch, { ...honoOptions, ...urlHostname(hostname), errorHandler: adapterErrorAnswer(log) })
  return refuseBadHost(ahead(tokenFastPath(exchange, log, accessLog(log, logRequests)), adapter))
}

/**
 * What the Vault-compatible listener answers requests with: the Vault app, behind the main listener's
 * refusals of a repeated or invalid Host (RFC 9112 §3.2) and of more than `maxHeadersCount` header lines
 * (the server reads one more: readOneHeaderLineMore), and the adapter's own refusals (a Host or target it
 * cannot make a URL of), all answered in Vault's shape. Exported for its tests.
 */
export function vaultRequestListener(
  app: Hono, maxHeadersCount: number, log: Logger,
  options: { hostname?: string; metrics?: { vaultRefused(reason: 'server_error'): void } | undefined } = {},
): RequestListener {
  const adapter = getRequestListener(app.fetch, { ...urlHostname(options.hostname), errorHandler: vaultAdapterErrorAnswer(log, options.metrics) })
  return refuseExtraHeaderLines(maxHeadersCount, refuseBadHost(adapter, vaultParserRefusal), vaultParserRefusal)
}

/**
 * The adapter's `hostname` option, which names the host of a request sent without Host (HTTP/1.0): it goes
 * into the request's URL as a Host would, so an IPv6 address the listener is bound to (`::`, `::1`) goes in
 * brackets (RFC 3986 §3.2.2); bare, no URL could be made of it and every such request was refused 400.
 * It goes in the URL's own form too: the adapter refuses a host its URL writes otherwise than given, and
 * the URL writes an address in its shortest form (`0:0:0:0:0:0:0:1` is `[::1]`) and takes no zone id
 * (`fe80::1%eth0`), which only says which interface the listener is on and names no other host.
 */
function urlHostname(hostname: string | undefined): { hostname?: string } {
  if (hostname === undefined) return {}
  const address = hostname.replace(/%.*$/, '')
  if (!isIPv6(address)) return { hostname }
  return { hostname: new URL(`http://[${address}]/`).hostname }
}

/** `first` answers what it recognises (POST /token); everything else goes to the hono app. */
function ahead(first: NodeRequestHandler, rest: RequestListener): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (!first(req, res)) rest(req, res)
  }
}
