import { X509Certificate } from 'node:crypto'
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs'
import { BlockList, isIP } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { caDir, type Config } from './config.ts'
import { poolCaFiles } from './ca/pool_ca_files.ts'
import { ConfigurationError } from './errors.ts'
import { loadIamClientCredentials } from './iam/client_auth.ts'
import { developmentKeyProblem, productionKeyProblem } from './keys/development_key_mark.ts'
import { KeyStore } from './keys/key_store.ts'
import type { Logger } from './lib/logger.ts'
import { readSecretFile } from './lib/secure_file.ts'
import { auditMacKeyFile, readAuditMacKey } from './keys/audit_mac_key.ts'
import { policyContextFromConfig } from './policy/context.ts'
import { formatIssue, loadPolicyDir } from './policy/load.ts'
import { sqliteAuditFile } from './storage/open_store.ts'
import { isDevelopmentCertificate } from './tls/dev_ca_name.ts'
import { readTlsFiles, TLS_START_SKEW_MS } from './tls/tls_files.ts'

export interface PreflightContext {
  /** The broker has a public issuer (see isProduction in production.ts). */
  production: boolean
  /** serve will start the development IAM (no issuer, no iam.issuers). */
  developmentIam?: boolean
  /** What `${IAM_ISSUER}` will stand for, as serve will define it. */
  iamIssuer: string | undefined
  log: Logger
}

/**
 * Everything `serve` can check before it touches the disk or the network: files it will read, directories
 * it will write, policies, IAM trust and the signing key a production config names. It creates nothing:
 * a configuration that cannot start must not leave keys or a database behind (or, worse, a random
 * signing key under the name of the pool's real one). Throws one ConfigurationError listing every problem.
 */
export async function preflight(config: Config, ctx: PreflightContext): Promise<void> {
  const problems: { code: string; message: string }[] = []
  const add = (code: string, message: string) => problems.push({ code, message })

  checkIam(config, ctx, add)
  for (const [i, issuer] of config.iam.issuers.entries()) {
    if (!issuer.client) continue
    try {
      await loadIamClientCredentials(issuer.client)
    } catch (err) {
      add('EIAMCLIENT', `iam.issuers.${i}.client: ${(err as Error).message}`)
    }
  }

  const dataDir = writableDirProblem(config.data_dir)
  if (dataDir) add('EDATADIR', `data_dir ${config.data_dir}: ${dataDir}`)
  if (config.audit.store === 'sqlite' && config.audit.sqlite.file) {
    const auditDir = writableDirProblem(dirname(sqliteAuditFile(config)))
    if (auditDir) add('EAUDITDIR', `audit.sqlite.file ${config.audit.sqlite.file}: ${auditDir}`)
  }

  if (ctx.production && config.tls.mode === 'auto') {
    // The development certificate names localhost: no verifier of a public broker could accept it.
    add('ETLS', 'tls.mode auto serves a development certificate for localhost; a broker with a public issuer needs tls.mode files (cert_file, key_file), or off behind a TLS proxy')
  }
  if (config.tls.mode === 'files') {
    const tls = tlsFilesProblem(config.tls.cert_file!, config.tls.key_file!)
    if (tls) add('ETLS', tls)
    // What tls.mode auto would serve, named as files: a development data_dir copied to the production host.
    // It names localhost, and clients would have to be told to trust a development CA to accept it.
    else if (ctx.production && isDevelopmentCertificate(readFileSync(config.tls.cert_file!))) {
      add('ETLS', `tls.cert_file ${config.tls.cert_file}: a development certificate (issued by the condor-token-broker development CA); a broker with a public issuer needs one from a CA its clients trust`)
    } else {
      sayValidity(config.tls.cert_file!, ctx.log)
    }
  }

  const vault = config.credentials.vault
  if (config.credentials.enabled && vault.enabled && config.tls.mode === 'off' && !isLoopbackHost(vault.host)) {
    // The listener hands out users' job tokens against a bearer X-Vault-Token, and HTCondor's Vault credmon
    // only speaks https: in plain HTTP it must not be reachable from another host. On loopback it stays
    // allowed, for tests and for a TLS proxy on this host (as tls.mode off allows for the main listener).
    add('EVAULTTLS', `credentials.vault.host ${vault.host}: the Vault-compatible listener hands out job tokens and HTCondor's Vault credmon only speaks https; with tls.mode off it may only listen on a loopback address (use tls.mode files, or a TLS proxy on this host in front of a loopback listener)`)
  }

  if (!ctx.production && !isLoopbackHost(config.listen.host)) {
    // Development mode is sound only while no other host can reach it: it makes keys on demand, checks no
    // IAM audience, and may start the development IAM, whose tokens anyone on this host can get. A
    // broker.yaml that leaves out `issuer` gets the loopback default; on a listener other hosts reach
    // (the container image listens on 0.0.0.0) that forgotten line must not quietly make it development.
    add('EDEVLISTEN', `listen.host ${config.listen.host} is reachable from other hosts, but the issuer ${config.issuer} is a loopback URL, which is development mode (keys created on demand, IAM audiences unchecked, development IAM and certificate); set issuer to the broker's public https URL, or listen on a loopback address`)
  }

  if (!ctx.production && config.credentials.enabled && vault.enabled && !isLoopbackHost(vault.host)) {
    // The Vault-compatible listener is a second way into the same development broker: it hands out job
    // tokens signed with keys made on demand, for users the development IAM vouches for to anyone on this
    // host. TLS does not change that (tls.mode auto serves the development certificate), so it is held to
    // the main listener's rule whatever the TLS mode.
    add('EDEVLISTEN', `credentials.vault.host ${vault.host} is reachable from other hosts, but the issuer ${config.issuer} is a loopback URL, which is development mode (keys created on demand, IAM audiences unchecked, development IAM and certificate), and the Vault-compatible listener hands out job tokens; set issuer to the broker's public https URL, or credentials.vault.host to a loopback address`)
  }

  if (ctx.production && config.trustDomainDefaulted) {
    add('ETRUSTDOMAIN', `trust_domain is not set: it must be the pool's TRUST_DOMAIN (condor_config_val TRUST_DOMAIN on the central manager; HTCondor 10+ defaults it to UID_DOMAIN), or HTCondor silently skips every IDTOKEN; this host's name (${config.trust_domain}) is only a development default`)
  }

  if (ctx.developmentIam) {
    const devKey = developmentKeyProblem(new KeyStore(join(config.data_dir, 'keys')), config.idtoken.key)
    if (devKey) add('EDEVKEY', devKey)
  }

  if (ctx.production) {
    const keys = new KeyStore(join(config.data_dir, 'keys'))
    const name = config.idtoken.key
    if (!keys.hasCondorKey(name)) {
      // On PostgreSQL this is usually a further replica, which must sign with the first one's keys (the
      // collector holds one such file; verifiers fetch /jwks from whichever replica answers): keys init
      // here would make different ones, so the refusal names the copy instead.
      const fix = config.audit.store === 'postgres'
        ? `on a further replica copy ${join(config.data_dir, 'keys')} from the replica that ran "condor-token-broker keys init" (files 0600; never run keys init on a second replica: it would make different keys); on the first replica run keys init, or "condor-token-broker keys import FILE --name ${name}" to adopt the pool's key`
        : `run "condor-token-broker keys init" to create it, or "condor-token-broker keys import FILE --name ${name}" to adopt the pool's key`
      add('ENOKEY', `the HTCondor signing key "${name}" (idtoken.key) does not exist at ${keys.condorKeyPath(name)}; a broker with a public issuer never invents one: ${fix}`)
    }
    const devKey = productionKeyProblem(keys, name)
    if (devKey) add('EDEVKEY', devKey)
    // Replicas must share one audit MAC key: one made up here would MAC records no other replica can check.
    try {
      readAuditMacKey(auditMacKeyFile(config))
    } catch (err) {
      add('EAUDITMACKEY', (err as Error).message)
    }
  }

  const bootstrap = config.admin.bootstrap_token_file
  if (bootstrap && existsSync(bootstrap)) {
    try {
      readSecretFile(bootstrap)
    } catch (err) {
      add('EADMINTOKEN', `admin.bootstrap_token_file: ${(err as Error).message}`)
    }
  } else if (bootstrap) {
    // serve creates it: where it cannot (e.g. /etc read-only under the systemd unit), say so now.
    const where = writableDirProblem(dirname(bootstrap))
    if (where) add('EADMINTOKEN', `admin.bootstrap_token_file ${bootstrap} does not exist and cannot be created: ${where}`)
  }
  const metricsToken = config.metrics.auth === 'bearer' ? config.metrics.bearer_token_file : undefined
  if (metricsToken && !existsSync(metricsToken)) {
    const where = writableDirProblem(dirname(metricsToken))
    if (where) add('EMETRICSTOKEN', `metrics.bearer_token_file ${metricsToken} does not exist and cannot be created: ${where}`)
  }
  if (bootstrap && metricsToken && sameToken(bootstrap, metricsToken)) {
    // metrics.auth bearer is for a scraper that may read /metrics and nothing else.
    add('EMETRICSTOKEN', 'metrics.bearer_token_file holds the admin bootstrap token (admin.bootstrap_token_file): whoever scrapes /metrics with it would be an admin; give metrics a token of its own (a missing file is created)')
  }

  // The CRL is built from certificate.revoked audit records: pruned before the certificate expires, a
  // revocation would drop off the CRL (fail open). Only a broker with a pool CA serves certificates.
  const retention = config.audit.retention_days
  if (retention > 0 && retention * 86400 < config.ca.max_lifetime && existsSync(poolCaFiles(caDir(config)).keyFile)) {
    add('ECARETENTION', `audit.retention_days (${retention}) must cover ca.max_lifetime (${config.ca.max_lifetime} s): a pruned certificate revocation would drop off the CRL while its certificate is still valid`)
  }

  const policy = loadPolicyDir(config.policy_dir, policyContextFromConfig(config, ctx.iamIssuer))
  if (!policy.ok) for (const i of policy.issues) add('EPOLICY', `policy: ${formatIssue(i)}`)

  if (problems.length === 1) throw new ConfigurationError(problems[0]!.code, problems[0]!.message)
  if (problems.length > 1) {
    throw new ConfigurationError(problems[0]!.code, `cannot start, ${problems.length} problems:\n${problems.map((p) => `  ${p.message}`).join('\n')}`)
  }
}

type Add = (code: string, message: string) => void

/**
 * A public broker trusts only real IAMs, and only tokens minted for it: without an expected `aud`, a
 * token a user handed to any other service of the same IAM could be replayed here (confused deputy).
 * `allow_any_audience: true` is the explicit, logged way out (an IAM that cannot put audiences in tokens).
 */
function checkIam(config: Config, ctx: PreflightContext, add: Add): void {
  if (ctx.production && config.iam.issuers.some((i) => i.development)) {
    add('EDEVIAM', 'iam.issuers marks an issuer as development: not allowed when the broker has a public (non-loopback) issuer')
  }
  if (ctx.production && config.iam.issuers.length === 0) {
    add('ENOIAM', 'no IAM issuer configured (iam.issuers); the development IAM is refused in production')
  }
  const introspecting = config.iam.issuers.filter((i) => i.introspection !== 'off')
  if (introspecting.length > 1) {
    ctx.log.warn('several IAM issuers introspect: opaque subject tokens are refused, since nothing says which IAM issued one and it must not reach the others (JWTs are unaffected)', { issuers: introspecting.map((i) => i.issuer) })
  }
  for (const [i, issuer] of config.iam.issuers.entries()) {
    if (issuer.audience) continue
    if (issuer.allow_any_audience) {
      ctx.log.warn('IAM issuer without an expected audience: tokens IAM minted for any other service are exchanged too (allow_any_audience)', { issuer: issuer.issuer })
    } else if (ctx.production) {
      add('EAUDIENCE', `iam.issuers.${i} (${issuer.issuer}) has no audience: a token minted for any other service would be exchanged; set audience: ${config.issuer} (clients request it from IAM) or, knowingly, allow_any_audience: true`)
    } else {
      ctx.log.warn('IAM issuer without an expected audience: aud is not checked (refused with a public issuer)', { issuer: issuer.issuer })
    }
  }
}

/**
 * Whether two token files are one token: the same path, the same file by another path (a link), or the
 * same token in two files (a copy), compared as the broker reads them (trimmed). Unreadable files are
 * reported by their own checks.
 */
function sameToken(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true
  try {
    const token = readSecretFile(a).toString('utf8').trim()
    return token !== '' && token === readSecretFile(b).toString('utf8').trim()
  } catch {
    return false
  }
}

/** Loopback addresses: 127.0.0.0/8 and ::1, IPv4-mapped ones (::ffff:127.0.0.1) matched as IPv4 by BlockList. */
const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/**
 * A host name or address only this machine can reach, in any spelling listen() takes for one: ::1 written
 * in full, an IPv4-mapped 127.x, localhost in capitals (names are case-insensitive).
 */
function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true
  const family = isIP(host)
  return family !== 0 && LOOPBACK.check(host, family === 6 ? 'ipv6' : 'ipv4')
}

/** Why the broker could not create or write `dir` (its nearest existing ancestor must be a writable directory), or undefined. */
function writableDirProblem(dir: string): string | undefined {
  let at = resolve(dir)
  for (;;) {
    if (existsSync(at)) break
    const up = dirname(at)
    if (up === at) return 'no existing parent directory'
    at = up
  }
  if (!statSync(at).isDirectory()) return `${at} is not a directory`
  try {
    accessSync(at, constants.W_OK | constants.X_OK)
  } catch {
    return at === resolve(dir) ? 'not writable' : `cannot be created: ${at} is not writable`
  }
  return undefined
}

/**
 * serve starts with a certificate outside its validity period, there being none in force to keep instead
 * (a reload refuses one), but every client that verifies it will refuse the broker: said at start-up, in
 * the journal, rather than left for the clients to report. The same five minutes of skew as a reload.
 */
function sayValidity(certFile: string, log: Logger): void {
  const leaf = new X509Certificate(readFileSync(certFile))
  const now = Date.now()
  if (leaf.validToDate.getTime() <= now) {
    log.error('the TLS certificate has expired: every client that verifies it refuses the broker until it is renewed (then reload)', { cert: certFile, notAfter: leaf.validToDate.toISOString() })
  } else if (leaf.validFromDate.getTime() - now > TLS_START_SKEW_MS) {
    log.error('the TLS certificate is not valid yet: every client that verifies it refuses the broker until it starts', { cert: certFile, notBefore: leaf.validFromDate.toISOString() })
  }
}

/** Reads the certificate and the key as serve will; the key like every secret file (no group or other bits). */
function tlsFilesProblem(certFile: string, keyFile: string): string | undefined {
  try {
    accessSync(certFile, constants.R_OK)
  } catch (err) {
    return `cannot read TLS certificate or key: ${certFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`
  }
  try {
    readSecretFile(keyFile)
  } catch (err) {
    return `TLS key: ${(err as Error).message}`
  }
  try {
    readTlsFiles(certFile, keyFile)
  } catch (err) {
    return (err as Error).message
  }
  return undefined
}
