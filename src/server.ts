import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { getRequestListener, serve } from '@hono/node-server'
import type { Hono } from 'hono'
import { createApp } from './app.ts'
import type { Config } from './config.ts'
import { OperatorError } from './errors.ts'
import { freePort } from './lib/free_port.ts'
import { readSecretFile } from './lib/secure_file.ts'
import type { Exchange } from './http/routes/token.ts'
import { applyListenerLimits, listenerServerOptions } from './http/listener_limits.ts'
import { tokenFastPath, type NodeRequestHandler } from './http/token_fast_path.ts'
import { buildServices, type BrokerServices } from './services.ts'
import { systemClock, type Clock } from './lib/clock.ts'
import type { Logger } from './lib/logger.ts'
import { accessLog } from './http/access_log.ts'
import { ensureDevTls } from './tls/dev_ca.ts'

export interface RunningBroker {
  /** Where the listener is reachable, e.g. https://127.0.0.1:8443 */
  url: string
  port: number
  /** The development CA file when tls.mode is auto. */
  devCaFile?: string
  /** The services behind the listener (development IAM handle, store, policy), for the demo and tests. */
  services: BrokerServices
  close(): Promise<void>
}

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
    exchange: services.exchange,
    admin: { audit: store, revocations: services.revocations, authenticators: services.adminAuthenticators, policy: services.policy },
  })

  let tls: { cert: Buffer; key: Buffer } | undefined
  let devCaFile: string | undefined
  if (config.tls.mode === 'auto') {
    const dev = await ensureDevTls(`${config.data_dir}/tls`)
    devCaFile = dev.caFile
    tls = { cert: readFileSync(dev.certFile), key: readSecretFile(dev.keyFile) }
    log.warn('serving with a DEVELOPMENT certificate; not for production', { ca: dev.caFile, cert: dev.certFile, created: dev.created })
  } else if (config.tls.mode === 'files') {
    let cert: Buffer
    try {
      cert = readFileSync(config.tls.cert_file!)
    } catch (err) {
      throw new OperatorError('ETLS', `cannot read TLS certificate or key: ${(err as Error).message}`)
    }
    // A TLS private key is a secret file like any other: refused when group or other may read it.
    tls = { cert, key: readSecretFile(config.tls.key_file!) }
  }

  const listener = brokerRequestListener(app, services.exchange, log, { hostname: config.listen.host, logRequests: config.log.requests })
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch, port: config.listen.port, hostname: config.listen.host,
        createServer: ((options: object) => tls
          ? createHttpsServer(options, listener)
          : createHttpServer(options, listener)) as never,
        serverOptions: { ...listenerServerOptions(config.http), ...tls },
      },
      () => resolve(s),
    )
    applyListenerLimits(s as Server, config.http)
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(new OperatorError('ELISTEN', `cannot listen on ${config.listen.host}:${config.listen.port}: ${err.code ?? err.message}`)))
  })
  const port = (server.address() as AddressInfo).port
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host
  const url = `${tls ? 'https' : 'http'}://${host}:${port}`
  log.info('condor-token-broker listening', { url, issuer: config.issuer, trust_domain: config.trust_domain, config: config.source, iam: config.iam.issuers.map((i) => i.issuer) })
  return {
    url,
    port,
    ...(devCaFile ? { devCaFile } : {}),
    services,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
      })
      await services.close()
    },
  }
}

/**
 * What `serve` answers requests with: POST /token on the fast path, everything else through the hono app.
 * Exported so the conformance suite runs through exactly this listener, on a real socket.
 */
export function brokerRequestListener(
  app: Hono, exchange: Exchange, log: Logger,
  options: { hostname?: string; overrideGlobalObjects?: boolean; logRequests?: boolean } = {},
): RequestListener {
  const { logRequests = false, ...honoOptions } = options
  return ahead(tokenFastPath(exchange, log, accessLog(log, logRequests)), getRequestListener(app.fetch, honoOptions))
}

/** `first` answers what it recognises (POST /token); everything else goes to the hono app. */
function ahead(first: NodeRequestHandler, rest: RequestListener): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (!first(req, res)) rest(req, res)
  }
}
