/**
 * The broker under attack: `startBroker` (the composition root `serve` uses, so POST /token goes through
 * the socket fast path) on a loopback ephemeral port, plain HTTP (tls.mode off: TLS is not what these
 * tests attack, and raw sockets let them send malformed HTTP), with the repository's own policies.
 *
 * IAM is the msw stand-in of test/support/iam.ts, served on a loopback socket: the broker reaches IAM
 * with its production HTTP client (undici), which msw cannot intercept, so the stand-in's handlers are
 * answered by a small server instead. A hono app built on the same services answers the same requests
 * through `app.request`, like the conformance suite does.
 *
 * Everything the broker logs is captured, so tests can check that no secret ever reaches a log line.
 */
import { chmodSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve } from '@hono/node-server'
import type { Hono } from 'hono'
import { getResponse } from 'msw'
import { setupServer } from 'msw/node'
import { stringify } from 'yaml'
import { createApp } from '../../../src/app.ts'
import type { AuditRecord } from '../../../src/audit/audit_log.ts'
import { loadConfig } from '../../../src/config.ts'
import { createLogger } from '../../../src/lib/logger.ts'
import { startBroker, type RunningBroker } from '../../../src/server.ts'
import { AT, IDTOKEN, JWT, TE } from '../../support/broker_e2e.ts'
import { TestIam } from '../../support/iam.ts'

export { AT, IDTOKEN, JWT as JWT_TYPE, TE }
export const TRUST_DOMAIN = 'pool.example.org'
/** The broker's issuer: loopback, so a development (http) IAM is allowed; the listener is plain HTTP. */
export const BROKER_ISSUER = 'https://localhost:8443'
/** The `aud` the broker requires of IAM subject tokens. */
export const BROKER_AUDIENCE = 'https://broker.example.org'

export interface Reply {
  status: number
  headers: Record<string, string>
  text: string
  /** Parsed JSON body, or undefined when the body is not JSON. */
  json: Record<string, unknown> | undefined
}

export interface SecurityBroker {
  broker: RunningBroker
  app: Hono
  iam: TestIam
  port: number
  /** Every line the broker logged, both through `serve`'s services and the hono app. */
  logs: string[]
  /** Values that must never appear in a response body or a log line. */
  secrets(): string[]
  bootstrapToken: string
  clientSecret: string
  /** A loopback server that must never be contacted (jku/x5u targets); counts what it receives. */
  decoy: { url: string; hits: number }
  /** IAM tokens for the callers the repository's policies know. */
  token: {
    provisioner(claims?: Record<string, unknown>): Promise<string>
    pilotFactory(claims?: Record<string, unknown>): Promise<string>
    user(claims?: Record<string, unknown>): Promise<string>
    monitoring(claims?: Record<string, unknown>): Promise<string>
    admin(claims?: Record<string, unknown>): Promise<string>
  }
  /** Audit records committed since the suite started, in chain order. */
  auditSince(seq: number): Promise<AuditRecord[]>
  auditHead(): Promise<number>
  close(): Promise<void>
}

/**
 * Starts everything. Also starts msw with `onUnhandledFrame: 'error'` and no handlers, so any fetch
 * the test process makes through the global fetch (a library following a `jku`, say) fails loudly.
 */
export async function startSecurityBroker(): Promise<SecurityBroker> {
  const msw = setupServer()
  msw.listen({ onUnhandledFrame: 'error' })

  const decoy = { url: '', hits: 0 }
  const decoyServer: Server = createServer((req, res) => { decoy.hits++; req.resume(); res.end('{"keys":[]}') })
  await new Promise<void>((r) => decoyServer.listen(0, '127.0.0.1', r))
  decoy.url = `http://127.0.0.1:${(decoyServer.address() as AddressInfo).port}`

  // The IAM stand-in's issuer names its port, so the socket comes first and the handlers are looked up per request.
  let handlers: ReturnType<TestIam['handlers']> = []
  const iamServer = serve({
    fetch: async (req) => (await getResponse(handlers, req)) ?? new Response('not found', { status: 404 }),
    port: 0, hostname: '127.0.0.1',
  })
  await new Promise<void>((r) => (iamServer.listening ? r() : iamServer.once('listening', () => r())))
  const iamPort = (iamServer.address() as AddressInfo).port
  const iam = await TestIam.create({ issuer: `http://127.0.0.1:${iamPort}/` })
  handlers = iam.handlers()

  const dir = mkdtempSync(join(tmpdir(), 'ctb-security-'))
  const policyDir = join(dir, 'policies')
  cpSync(join(import.meta.dirname, '../../../policies'), policyDir, { recursive: true })
  const clientSecretFile = join(dir, 'iam-client.secret')
  writeFileSync(clientSecretFile, `${iam.brokerClientSecret}\n`, { mode: 0o600 })
  const bootstrapFile = join(dir, 'admin.token')
  const bootstrapToken = `boot-${'b'.repeat(8)}-${Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url')}`
  writeFileSync(bootstrapFile, `${bootstrapToken}\n`, { mode: 0o600 })
  chmodSync(bootstrapFile, 0o600)
  const configFile = join(dir, 'broker.yaml')
  writeFileSync(configFile, stringify({
    issuer: BROKER_ISSUER,
    trust_domain: TRUST_DOMAIN,
    data_dir: join(dir, 'data'),
    policy_dir: policyDir,
    listen: { host: '127.0.0.1', port: 0 },
    tls: { mode: 'off' },
    policy: { vars: { IAM_ISSUER: iam.issuer }, watch: false },
    admin: { bootstrap_token_file: bootstrapFile },
    iam: {
      issuers: [{
        issuer: iam.issuer,
        development: true,
        audience: BROKER_AUDIENCE,
        client: { client_id: iam.brokerClientId, auth_method: 'client_secret_basic', client_secret_file: clientSecretFile },
      }],
      timeout_seconds: 2,
      jwks_timeout_seconds: 2,
      discovery_retry_seconds: 0,
    },
  }))

  const logs: string[] = []
  const log = createLogger((line) => { logs.push(line) })
  const broker = await startBroker(loadConfig({ file: configFile, env: {} }), { log })
  const { config, keys, exchange, store, revocations, adminAuthenticators, policy } = broker.services
  const app = createApp({
    config, keys, log, readiness: async () => ({ keys: 'ok' }), exchange,
    admin: { audit: store, revocations, authenticators: adminAuthenticators, policy },
  })

  const keyMaterial = readKeyMaterial(join(dir, 'data', 'keys'))
  const mint = (claims: Record<string, unknown>) => (extra: Record<string, unknown> = {}) =>
    iam.mint({ aud: BROKER_AUDIENCE, ...claims, ...extra })

  return {
    broker, app, iam, port: broker.port, logs, bootstrapToken, clientSecret: iam.brokerClientSecret, decoy,
    secrets: () => [bootstrapToken, iam.brokerClientSecret, ...keyMaterial],
    token: {
      provisioner: mint({ client_id: 'ctb-cloud-a-provisioner', 'wlcg.groups': [] }),
      pilotFactory: mint({ client_id: 'ctb-hpc-b-pilot-factory', 'wlcg.groups': [] }),
      user: mint({ 'wlcg.groups': ['/htc/users'], preferred_username: 'alice' }),
      monitoring: mint({ client_id: 'ctb-monitoring', 'wlcg.groups': [] }),
      admin: mint({ 'wlcg.groups': ['/ctb-admins'], preferred_username: 'root-of-all' }),
    },
    async auditSince(seq) {
      const out: AuditRecord[] = []
      for await (const r of store.scan(seq + 1)) out.push(r)
      return out
    },
    async auditHead() {
      return (await store.query({ limit: 1 })).records[0]?.seq ?? 0
    },
    async close() {
      msw.close()
      await broker.close()
      await new Promise<void>((r) => iamServer.close(() => r()))
      await new Promise<void>((r) => decoyServer.close(() => r()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * Private key material as it could leak: every PEM body line of the SciToken keys, and the HTCondor
 * signing keys in hex and base64 (the raw bytes are binary; an encoder is how they would show up).
 */
function readKeyMaterial(keysDir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) { walk(p); continue }
      if (name === 'keyring.json') continue // public metadata only
      const bytes = readFileSync(p)
      if (name.endsWith('.pem')) {
        out.push(...bytes.toString('utf8').split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----')))
      } else {
        out.push(bytes.toString('hex'), bytes.toString('base64'), bytes.toString('base64url'))
      }
    }
  }
  walk(keysDir)
  if (out.length === 0) throw new Error(`no key material found under ${keysDir}`)
  return out
}

export function parseReplyText(status: number, headers: Record<string, string>, text: string): Reply {
  let json: Record<string, unknown> | undefined
  try {
    const v = JSON.parse(text) as unknown
    if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>
  } catch { /* not JSON */ }
  return { status, headers, text, json }
}

/** The same request through the hono route (`app.request`). */
export async function viaApp(app: Hono, method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<Reply> {
  const res = await app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) })
  const text = await res.text()
  return parseReplyText(res.status, Object.fromEntries([...res.headers].map(([k, v]) => [k.toLowerCase(), v])), text)
}

/** application/x-www-form-urlencoded; array values become repeated parameters, in order. */
export function encodeForm(form: Record<string, string | string[]>): string {
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x)
  return p.toString()
}

export function exchangeForm(subjectToken: string, role: string, extra: Record<string, string | string[]> = {}): Record<string, string | string[]> {
  return { grant_type: TE, subject_token: subjectToken, subject_token_type: AT, role, ...extra }
}
