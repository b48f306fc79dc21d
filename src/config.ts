import { closeSync, existsSync, fstatSync, openSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import { LineCounter, parseDocument, visit, type Document } from 'yaml'
import { z } from 'zod'
import { ConfigurationError } from './errors.ts'
import { keyNameProblem } from './keys/condor_key_file.ts'
import { Bool, integer, seconds } from './lib/config_values.ts'
import { LOG_LEVELS } from './lib/logger.ts'
import { positionOf, zodIssueMessage } from './lib/yaml_position.ts'
import { AdminConfigSchema, AuditConfigSchema, RevocationConfigSchema } from './audit/audit_config.ts'
import { PolicyConfigSchema } from './policy/policy_config.ts'
import { modeString, replaceableByOthers, wayOf, writableByOthers } from './lib/file_mode.ts'
import { shownPath } from './lib/terminal_text.ts'
import { IamConfigSchema } from './iam/iam_config.ts'
import { ListenerLimitsSchema } from './http/listener_limits.ts'
import { RateLimitsConfigSchema } from './ratelimit/rate_limit_config.ts'
import { MetricsConfigSchema } from './metrics/metrics_config.ts'
import { CredentialsConfigSchema } from './credentials/credentials_config.ts'

const Seconds = seconds()
const Port = integer(0, 65535)

/**
 * TRUST_DOMAIN is the IDTOKEN `iss`; HTCondor splits lists on commas and whitespace, so one that holds
 * either can never match. Each check says which character is wrong.
 */
const TrustDomain = z.string()
  .min(1, 'must not be empty')
  .refine((s) => !/\s/.test(s), 'must not contain spaces or tabs')
  .refine((s) => !s.includes(','), 'must not contain a comma')
  .refine((s) => /^[\x00-\x7f]*$/.test(s), 'must be ASCII (no accented or other non-ASCII letters)')
  .refine((s) => !/[\x00-\x1f\x7f]/.test(s), 'must not contain control characters')

/**
 * The broker's public issuer URL. RFC 8414 §2 and OpenID Connect Discovery §3: https, no query, no
 * fragment; discovery is this URL with /.well-known/openid-configuration appended, which a query or a
 * fragment would swallow. No user or password either: the URL is copied into every token, into discovery
 * and into the logs. Messages never echo the value (a password in it is a secret).
 */
const Issuer = z.string().url()
  .refine((u) => u.startsWith('https://'), 'must be an https URL (scitokens-cpp refuses others)')
  .refine((u) => !URL.canParse(u) || (new URL(u).username === '' && new URL(u).password === ''), 'must not contain a user name or password')
  .refine((u) => !u.includes('?') && !u.includes('#'), 'must not contain a query (?...) or fragment (#...)')

/**
 * The whole configuration. Every leaf can be overridden by an environment variable named
 * CTB_<PATH>, e.g. CTB_LISTEN_PORT or CTB_TLS_CERT_FILE (see config/broker.example.yaml).
 */
export const ConfigSchema = z.strictObject({
  /** Public https URL: `iss` of SciTokens and the base of discovery; default https://localhost:<port>. */
  issuer: Issuer.optional(),
  /**
   * TRUST_DOMAIN of the pool: `iss` of IDTOKENs. HTCondor 10+ defaults it to UID_DOMAIN (the central
   * manager's full host name); this host's name is only a development default, refused by preflight for a
   * public broker, since a token whose iss differs from the pool's is silently skipped by HTCondor.
   */
  trust_domain: TrustDomain.default(hostname()),
  data_dir: z.string().min(1).default('data'),
  policy_dir: z.string().min(1).default('policies'),
  listen: z.strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: Port.default(8443),
  }).prefault({}),
  /** Timeouts and connection limits of the listener (src/http/listener_limits.ts). */
  http: ListenerLimitsSchema.prefault({}),
  /** On SIGTERM, in-flight requests get this long to finish before the connections left are closed. */
  shutdown_grace_seconds: integer(0).default(10),
  tls: z.strictObject({
    /** auto: development CA and localhost certificate under data_dir/tls; files: cert_file + key_file; off: plain HTTP behind a TLS proxy. */
    mode: z.enum(['auto', 'files', 'off']).default('auto'),
    cert_file: z.string().optional(),
    key_file: z.string().optional(),
  }).prefault({}),
  idtoken: z.strictObject({
    /** HTCondor key name (file under data_dir/keys/condor) and JWT kid. A dedicated name, not POOL, is recommended. */
    // Checked here, with the configuration: otherwise only the first use of the key path refuses it, after
    // serve's start-up checks, as a failure a supervisor restarts rather than a configuration to mend.
    key: z.string().min(1).superRefine((name, ctx) => {
      const problem = keyNameProblem(name)
      if (problem) ctx.addIssue({ code: 'custom', message: problem })
    }).default('broker1'),
    default_lifetime: Seconds.default(3600),
    max_lifetime: Seconds.default(7 * 86400),
  }).prefault({}),
  scitoken: z.strictObject({
    alg: z.enum(['ES256', 'RS256']).default('ES256'),
    profile: z.enum(['wlcg', 'scitokens2']).default('wlcg'),
    default_lifetime: Seconds.default(1200),
    max_lifetime: Seconds.default(6 * 3600),
    /** After rotation, keep a retired public key in the JWKS at least this long (scitokens-cpp caches keys up to 4 days). */
    retired_key_min_publish: Seconds.default(4 * 86400),
    /** Take up a rotated key (`keys rotate`) when the keyring changes on disk; SIGHUP always does. */
    watch_keys: Bool.default(true),
  }).prefault({}),
  log: z.strictObject({
    /** One access line per request (config/broker.example.yaml); on by default, as operators expect. */
    requests: Bool.default(true),
    level: z.enum(LOG_LEVELS).default('info'),
  }).prefault({}),
  /**
   * The development IAM (src/dev_iam) that `serve` starts beside the broker when iam.issuers is empty and
   * the broker's issuer is a loopback URL (development; see isProduction in src/production.ts). Loopback only.
   */
  dev_iam: z.strictObject({ port: Port.default(8444) }).prefault({}),
  /**
   * The pool CA (docs/pool-ca.md): host certificates for HTCondor's SSL authentication. Served only when
   * `ca init` has created it under `dir` (default data_dir/ca).
   */
  ca: z.strictObject({
    dir: z.string().min(1).optional(),
    /** Cap on a host certificate's lifetime, whatever a policy grant allows. */
    max_lifetime: Seconds.default(7 * 86400),
    /** nextUpdate of the published CRL. */
    crl_lifetime: Seconds.default(86400),
  }).prefault({}),
  /** Audit store, retention and group commit (src/audit/audit_config.ts). */
  audit: AuditConfigSchema.prefault({}),
  admin: AdminConfigSchema,
  revocation: RevocationConfigSchema,
  /** Policy variables, UID_DOMAIN and reload behaviour (src/policy/policy_config.ts, docs/policies.md). */
  policy: PolicyConfigSchema,
  /** Trusted INDIGO IAM issuers and the broker's own client at each (src/iam/iam_config.ts, docs/iam.md). */
  iam: IamConfigSchema.prefault({}),
  /** Per caller, per role and per client address limits on POST /token and POST /v1/certificates (docs/rate-limits.md). */
  rate_limits: RateLimitsConfigSchema.prefault({}),
  /** GET /metrics: on or off, who may scrape, the key rotation schedule (src/metrics/metrics_config.ts, docs/metrics.md). */
  metrics: MetricsConfigSchema,
  /** Users' job credentials: stored refresh tokens, the job token endpoint, the Vault-compatible listener (docs/job-credentials.md). */
  credentials: CredentialsConfigSchema.prefault({}),
}).superRefine((c, ctx) => {
  if (c.rate_limits.store === 'postgres' && c.audit.store !== 'postgres') {
    ctx.addIssue({ code: 'custom', path: ['rate_limits', 'store'], message: 'rate_limits.store "postgres" uses the audit database: it needs audit.store "postgres"' })
  }
  if (c.tls.mode === 'files' && (!c.tls.cert_file || !c.tls.key_file)) {
    ctx.addIssue({ code: 'custom', path: ['tls', 'cert_file'], message: 'tls.mode "files" needs tls.cert_file and tls.key_file' })
  }
  // Ignored otherwise: the development certificate or plain HTTP would serve where a certificate was named.
  for (const key of ['cert_file', 'key_file'] as const) {
    if (c.tls.mode !== 'files' && c.tls[key] !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls', key], message: `applies only to tls.mode "files" (this one is "${c.tls.mode}")` })
    }
  }
  if (c.tls.mode === 'off' && !c.issuer) {
    ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'tls.mode "off" (behind a TLS proxy) needs the public https issuer URL' })
  }
  if (c.idtoken.default_lifetime > c.idtoken.max_lifetime) {
    ctx.addIssue({ code: 'custom', path: ['idtoken', 'default_lifetime'], message: 'must not exceed idtoken.max_lifetime' })
  }
  if (c.scitoken.default_lifetime > c.scitoken.max_lifetime) {
    ctx.addIssue({ code: 'custom', path: ['scitoken', 'default_lifetime'], message: 'must not exceed scitoken.max_lifetime' })
  }
})

export type Config = z.infer<typeof ConfigSchema> & {
  issuer: string
  source: string
  /** True when `issuer` was not configured and was derived from listen.port (development defaults). */
  issuerDefaulted: boolean
  /** True when `trust_domain` was not configured and fell back to this host's name (refused in production). */
  trustDomainDefaulted?: boolean
}

/** Every leaf path of the schema, for the CTB_* environment overrides. */
function leafPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  let s: z.ZodType = schema
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodPrefault) s = s.unwrap() as z.ZodType
    else if (s instanceof z.ZodPipe) s = s.in as z.ZodType
    else break
  }
  if (s instanceof z.ZodObject) {
    return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => leafPaths(v, [...prefix, k]))
  }
  return [prefix]
}

export function envName(path: string[]): string {
  return `CTB_${path.join('_').toUpperCase()}`
}

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj
  for (const k of path.slice(0, -1)) {
    if (typeof cur[k] !== 'object' || cur[k] === null) cur[k] = {}
    cur = cur[k] as Record<string, unknown>
  }
  cur[path.at(-1)!] = value
}

interface YamlSource {
  file: string
  /** The file's mode bits, from the descriptor it was read through. */
  mode: number
  doc: Document
  lc: LineCounter
  value: Record<string, unknown>
}

/** Reads a YAML file into a plain object, keeping the document so errors can point at lines and columns. */
function readYaml(file: string): YamlSource {
  let text: string
  let mode: number
  let fd: number | undefined
  try {
    // One descriptor for the mode and the text: a check by path and a read by path could see two files.
    fd = openSync(file, 'r')
    mode = fstatSync(fd).mode
    text = readFileSync(fd, 'utf8')
  } catch (err) {
    throw new ConfigurationError('ECONFIG', `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
  // Whoever may write it chooses the policies, the IAM trusted and the keys; group write is the admins' choice.
  if (writableByOthers(file, mode)) {
    throw new ConfigurationError('ECONFIG', `${file} is writable by every user (mode ${modeString(mode)}), who could change what the broker trusts; chmod o-w ${file}`)
  }
  // A 0644 file is anyone's in a directory anyone may write (no sticky bit): they can rename theirs over it.
  let swappable: ReturnType<typeof replaceableByOthers>
  try {
    swappable = replaceableByOthers(file)
  } catch (err) {
    throw new ConfigurationError('ECONFIG', `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  if (swappable) {
    const way = wayOf(swappable)
    // Both may be where a link in an open directory leads: whatever its writer named them, escapes and all.
    const real = shownPath(swappable.real)
    const dir = shownPath(swappable.dir)
    const named = swappable.real === resolve(file) ? `${file} is under` : way === 'under' ? `${file} names ${real}, which is under` : `${file} names ${real}, by way of`
    throw new ConfigurationError('ECONFIG', `${named} ${dir}, a directory every user may write (mode ${modeString(swappable.mode)}), where anyone could put a file of their own in its place; chmod o-w ${dir}`)
  }
  const lc = new LineCounter()
  const doc = parseDocument(text, { prettyErrors: false, lineCounter: lc, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const { line, col } = lc.linePos(e.pos[0])
      return `  ${file}:${line}:${col}: ${e.message.split('\n')[0]}`
    })
    throw new ConfigurationError('ECONFIG', `invalid configuration:\n${lines.join('\n')}`)
  }
  let value: unknown
  try {
    // Bounded as for policy files: aliases that expand without limit are refused, not expanded.
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    // An alias to no anchor, or too many: a configuration to mend, not an internal error (exit 78, not 70).
    // At the first alias to no anchor; else (too many aliases) at the first alias.
    let at: number | undefined
    let unresolved: number | undefined
    visit(doc, {
      Alias(_key, node) {
        at ??= node.range?.[0]
        if (node.resolve(doc) === undefined) {
          unresolved = node.range?.[0]
          return visit.BREAK
        }
        return undefined
      },
    })
    at = unresolved ?? at ?? 0
    const { line, col } = lc.linePos(at)
    throw new ConfigurationError('ECONFIG', `invalid configuration:\n  ${file}:${line}:${col}: ${(err as Error).message.split('\n')[0]}`)
  }
  if (value === null || value === undefined) return { file, mode, doc, lc, value: {} }
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigurationError('ECONFIG', `${file}: the top level must be a mapping`)
  return { file, mode, doc, lc, value: value as Record<string, unknown> }
}

/**
 * One line per problem, never echoing a value (it may be a secret): `FILE:LINE:COL: path: message` for
 * what the file says, `path: message (from CTB_X)` for an environment override, as policy files do.
 */
function issueLines(issues: readonly z.core.$ZodIssue[], src: YamlSource | undefined, fromEnv: ReadonlyMap<string, string>): string[] {
  const out: { line: number; col: number; text: string }[] = []
  for (const issue of issues) {
    // One line per unknown key, each at its own position.
    const keys = issue.code === 'unrecognized_keys' ? issue.keys : [undefined]
    for (const key of keys) {
      const { message } = key === undefined ? zodIssueMessage(issue) : { message: `unknown key "${key}"` }
      const path = issue.path.map(String)
      const where = path.join('.') || '(top level)'
      const env = fromEnv.get(path.join('.'))
      if (env !== undefined || !src) {
        out.push({ line: 0, col: 0, text: `  ${where}: ${message}${env ? ` (from ${env})` : ''}` })
        continue
      }
      const at = positionOf(src.doc, src.lc, issue.path, key)
      out.push({ ...at, text: `  ${src.file}:${at.line}:${at.col}: ${where}: ${message}` })
    }
  }
  return out.sort((a, b) => a.line - b.line || a.col - b.col).map((o) => o.text)
}

/**
 * Loads the configuration: YAML file (from `file`, CTB_CONFIG, or config/broker.yaml if present), then
 * CTB_* environment overrides, validated once. Unknown keys and unknown CTB_* variables are errors: a
 * misspelt key silently falling back to a default (`tls: { mdoe: files }` serving the development
 * certificate) is worse than not starting. Errors list one line per bad field and never echo values.
 */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = options.env ?? process.env
  const file = options.file ?? env.CTB_CONFIG ?? (existsSync('config/broker.yaml') ? 'config/broker.yaml' : undefined)
  const src = file ? readYaml(file) : undefined
  const raw = src?.value ?? {}
  const fromEnv = new Map<string, string>()
  const known = new Set(['CTB_CONFIG'])
  for (const path of leafPaths(ConfigSchema)) {
    const name = envName(path)
    known.add(name)
    const v = env[name]
    if (v !== undefined && v !== '') {
      setPath(raw, path, v)
      fromEnv.set(path.join('.'), name)
    }
  }
  const unknownEnv = Object.keys(env).filter((k) => k.startsWith('CTB_') && !known.has(k)).sort()
  const trustDomainDefaulted = raw.trust_domain === undefined
  const parsed = ConfigSchema.safeParse(raw)
  if (!parsed.success || unknownEnv.length > 0) {
    const lines = [
      ...unknownEnv.map((k) => `  ${k}: unknown configuration variable (each field is CTB_<PATH>, e.g. CTB_LISTEN_PORT)`),
      ...(parsed.success ? [] : issueLines(parsed.error.issues, src, fromEnv)),
    ]
    throw new ConfigurationError('ECONFIG', `invalid configuration${file ? ` in ${file}` : ''}:\n${lines.join('\n')}`)
  }
  const c = parsed.data
  const dsn = c.audit.postgres.dsn
  if (src && dsn && !fromEnv.has('audit.postgres.dsn') && (src.mode & 0o004) && dsnHasPassword(dsn)) {
    throw new ConfigurationError('ECONFIG', `audit.postgres.dsn in ${src.file} holds a password and the file is readable by every user (mode ${modeString(src.mode)}); chmod o-r ${src.file}, or give the DSN in CTB_AUDIT_POSTGRES_DSN or the password in PGPASSWORD`)
  }
  const issuer = c.issuer ?? `https://localhost:${c.listen.port}`
  return { ...c, issuer, issuerDefaulted: c.issuer === undefined, trustDomainDefaulted, source: file ?? '(built-in defaults)' }
}

/**
 * A password in a libpq DSN: in the URL's user part, as a `password` parameter, or as `password=` in the
 * key=value form. A secret in broker.yaml is held to the rule of every secret file: no one else reads it.
 */
function dsnHasPassword(dsn: string): boolean {
  if (/(^|\s)password\s*=/i.test(dsn)) return true
  return dsnReadings(dsn).some((url) => url.password !== '' || url.searchParams.has('password'))
}

/**
 * The URLs pg could read a DSN as. A WHATWG parser refuses credentials without a host
 * (`postgres://u:pw@/db?host=/run/postgresql`, the Unix-socket form libpq documents, or pg's `socket://u:pw@/path`),
 * and one with a space in its host; pg reads both, with a placeholder host and with the text percent-encoded,
 * and uses the password. Each reading is looked at, so none the driver takes goes unseen.
 */
function dsnReadings(dsn: string): URL[] {
  const texts = [dsn, ...(dsn.isWellFormed() ? [encodeURI(dsn)] : [])].flatMap((t) => [t, t.replace('@/', '@placeholder/')])
  return texts.filter((t) => URL.canParse(t, 'postgres://base')).map((t) => new URL(t, 'postgres://base'))
}

/**
 * The copy of the sealed audit anchor (docs/audit.md), on the broker's host whatever the audit store: one per
 * data directory, so each replica keeps its own.
 */
export function auditAnchorFile(config: Config): string {
  return `${config.data_dir}/audit_anchor`
}

/** Where the pool CA's key and certificate live. */
export function caDir(config: Config): string {
  return config.ca.dir ?? `${config.data_dir}/ca`
}

/** The longest any token this broker issues can live: how long a revocation must stay in force at most. */
export function maxTokenLifetime(config: Config): number {
  return Math.max(config.idtoken.max_lifetime, config.scitoken.max_lifetime)
}
