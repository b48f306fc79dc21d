import { randomUUID } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { basename, dirname } from 'node:path'
import { loadConfig, maxTokenLifetime, type Config } from '../../config.ts'
import { BrokerError, OperatorError } from '../../errors.ts'
import type { VerifiedSubject } from '../../iam/subject.ts'
import { inspectToken, type InspectContext } from '../../inspect/inspect_token.ts'
import { parseAuthzLevel, type AuthzLevel } from '../../issuance/authz.ts'
import { buildIdTokenClaims, mintIdToken, prepareIdTokenKey, type IdTokenKey } from '../../issuance/idtoken.ts'
import { issueDepsFrom, issueToken, type AllowedDecision, type IssuedTokenResult } from '../../issuance/issue.ts'
import { decideOperatorGrant, PRIVILEGED_LEVELS, type OperatorOverride, type OperatorRequest } from '../../issuance/operator_grant.ts'
import type { AsymmetricKey } from '../../issuance/scitoken.ts'
import { verifyMintedIdToken, verifyMintedSciToken } from '../../issuance/verify_minted.ts'
import { decodeCompact } from '../../issuance/jws.ts'
import { CONDOR_EXCLUDED_NAME } from '../../keys/condor_key_file.ts'
import { KeyStore, loadIdTokenKeyFile, readCondorKeyFile } from '../../keys/key_store.ts'
import { findOwnKey } from '../../keys/own_key_match.ts'
import type { SigningKeys } from '../../keys/signing_keys.ts'
import { systemClock } from '../../lib/clock.ts'
import { createLogger } from '../../lib/logger.ts'
import { CENTRAL_MANAGER_ROLE, MAX_IDENTITY_LENGTH, RESERVED_USERS } from '../../policy/schema.ts'
import { asciiLower } from '../../lib/ascii_case.ts'
import { toAuthzLevel } from '../../policy/scopes.ts'
import { RevocationService } from '../../revocation/revocation_service.ts'
import type { BrokerStore } from '../../storage/chained_store.ts'
import { openBrokerStore } from '../../storage/open_store.ts'
import { prepareFileReplacement, readSecretFile, type PendingReplacement } from '../../lib/secure_file.ts'
import { assertDataDirOwner } from '../data_dir_owner.ts'
import { CliError, parse, positiveInt, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker token <create|inspect> [options]

token create --identity USER@DOMAIN --authz LEVEL[,LEVEL] [--authz ...] [--lifetime SECONDS] [--key NAME]
             [--role ROLE] [--allow-privileged LEVEL[,LEVEL]] [--allow-reserved-identity USER] [--allow-direct-attach]
             [--file OUT]
    Mint an HTCondor IDTOKEN with the broker's key, checked and audited as POST /token is: the token is
    printed (or, with --file, written as HTCondor does: token + newline, mode 0600) only after its audit
    record is committed. It carries ctb_role ROLE (default cli) for revoke --role.
    LEVEL: READ WRITE NEGOTIATOR ADMINISTRATOR CONFIG DAEMON ADVERTISE_STARTD ADVERTISE_SCHEDD ADVERTISE_MASTER
    --allow-privileged names each of ADMINISTRATOR, CONFIG, DAEMON, NEGOTIATOR the token may carry;
    --allow-reserved-identity names condor, condor_pool or root as the identity's user, and only role
    ${CENTRAL_MANAGER_ROLE} may carry one (as in policies). --allow-direct-attach lets a pilot or startd role
    (pilot, startd, annex-pilot, ...) carry WRITE, as a grant's direct_attach does. An identity has at most
    ${MAX_IDENTITY_LENGTH} characters; --file names a file in an existing directory, checked before minting.
    --lifetime is capped by idtoken.max_lifetime.

token create --identity USER@DOMAIN --authz LEVEL ... --key-file FILE [--trust-domain DOMAIN] [--file OUT]
    Sign with a key file the broker does not own, as condor_token_create does: no checks, no audit record.
    Any of the broker's own keys (by path, by content, or by the signing key it derives) is refused.

token create --scitoken --sub SUB --aud AUD [--aud AUD ...] --scope "S1 S2" [--lifetime SECONDS]
             [--profile wlcg|scitokens2] [--role ROLE] [--allow-privileged ...] [--allow-any-audience] [--file OUT]
    Mint a SciToken (ver scitoken:2.0) or WLCG token (wlcg.ver 1.0) signed by the broker's active key,
    checked and audited likewise. Storage paths must be absolute and normalised (storage.read:/data);
    the audiences ANY and https://wlcg.cern.ch/jwt/v1/any need --allow-any-audience; --lifetime is
    capped by scitoken.max_lifetime.

token inspect [TOKEN | --file F] [--key-file F] [--trust-domain D] [--issuer-keys K1,K2] [--json]
    Decode and verify a token and say why HTCondor or scitokens-cpp would refuse it.
    Exit status: 0 would be accepted, 1 would be refused, 2 usage error.

Common options: --config FILE (or CTB_CONFIG)`

export async function tokenCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  if (sub === 'create') return create(rest, io)
  if (sub === 'inspect') return inspect(rest, io)
  throw new CliError(`unknown token command "${sub}" (see token --help)`, 2)
}

function configFrom(file: string | undefined, io: CommandIo): Config {
  return loadConfig({ ...(file ? { file } : {}), env: io.env })
}

async function create(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(argv, {
    config: { type: 'string' },
    identity: { type: 'string' },
    authz: { type: 'string', multiple: true },
    lifetime: { type: 'string' },
    key: { type: 'string' },
    'key-file': { type: 'string' },
    'trust-domain': { type: 'string' },
    file: { type: 'string' },
    scitoken: { type: 'boolean' },
    sub: { type: 'string' },
    aud: { type: 'string', multiple: true },
    scope: { type: 'string' },
    profile: { type: 'string' },
    role: { type: 'string' },
    'allow-privileged': { type: 'string', multiple: true },
    'allow-reserved-identity': { type: 'string', multiple: true },
    'allow-any-audience': { type: 'boolean' },
    'allow-direct-attach': { type: 'boolean' },
  }, true)
  if (values.help) { io.out(HELP); return 0 }
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}" (see token --help)`, 2)
  const config = configFrom(values.config, io)
  // Minted with the broker's keys, a token is audited into data_dir; --key-file signs offline and writes nothing there.
  if (!values['key-file']) assertDataDirOwner(config.data_dir, 'token create')
  const lifetime = positiveInt('lifetime', values.lifetime)
  let request: OperatorRequest
  if (values.scitoken) {
    if (values['key-file']) throw new CliError('--key-file signs IDTOKENs only; SciTokens are signed with the broker\'s active key', 2)
    if (!values.sub) throw new CliError('--sub is required with --scitoken', 2)
    if (!values.aud?.length) throw new CliError('--aud is required with --scitoken (mandatory in SciTokens 2.0 and WLCG)', 2)
    if (!values.scope) throw new CliError('--scope is required with --scitoken', 2)
    const profile = values.profile ?? config.scitoken.profile
    if (profile !== 'wlcg' && profile !== 'scitokens2') throw new CliError(`--profile must be wlcg or scitokens2, got "${profile}"`, 2)
    request = { tokenKind: 'scitoken', identity: values.sub, audience: values.aud, scopes: [values.scope], profile, ...common() }
  } else {
    if (!values.identity) throw new CliError('--identity USER@DOMAIN is required (or --scitoken)', 2)
    if (!values.authz?.length) throw new CliError('at least one --authz is required: an IDTOKEN without scopes is unrestricted', 2)
    const authz = listOption(values.authz)
    if (values['key-file']) return createWithKeyFile(values['key-file'], values.identity, authz, lifetime, values, config, io)
    const td = values['trust-domain']
    if (td !== undefined && td !== config.trust_domain) {
      throw new CliError(`the broker's keys sign for trust domain ${config.trust_domain} only; use --key-file to sign for ${td}`, 2)
    }
    request = { tokenKind: 'idtoken', identity: values.identity, audience: [], scopes: authz, ...common() }
  }

  function common(): Pick<OperatorRequest, 'role' | 'allow' | 'lifetime'> {
    return {
      role: values.role ?? CLI_ROLE,
      ...(lifetime !== undefined ? { lifetime } : {}),
      allow: {
        privileged: listOption(values['allow-privileged']).map((l) => privilegedLevel(l)),
        reservedUsers: listOption(values['allow-reserved-identity']).map((u) => reservedUser(u)),
        anyAudience: values['allow-any-audience'] === true,
        directAttach: values['allow-direct-attach'] === true,
      },
    }
  }

  const decision = decideOperatorGrant(request, {
    defaultLifetime: { idtoken: config.idtoken.default_lifetime, scitoken: config.scitoken.default_lifetime },
    maxLifetime: { idtoken: config.idtoken.max_lifetime, scitoken: config.scitoken.max_lifetime },
  })
  if (!decision.allow) throw new CliError(decision.override ? `${decision.reason}; ${overrideHint(decision.override)}` : decision.reason)

  // The output file is checked (its temp file created) before anything is minted: a token audited as
  // issued but never delivered is a live credential nobody holds on purpose.
  const output = values.file !== undefined ? openOutput(values.file, io) : undefined
  try {
    const now = systemClock.now()
    const keys = signingKeysFor(request.tokenKind, new KeyStore(`${config.data_dir}/keys`), values.key ?? config.idtoken.key, now)
    const issued = await issueAudited(decision, keys, config, io)
    deliver(issued.token, output, io, (problem) => `token ${issued.jti} was issued and audited but not written: ${problem}; revoke it with: condor-token-broker revoke --jti ${issued.jti}`)
  } finally {
    output?.abort()
  }
  return 0
}

/** ctb_role of tokens minted here unless --role says otherwise: `revoke --role cli` reaches them all. */
const CLI_ROLE = 'cli'

/** `--opt A,B --opt C` → [A, B, C]. */
function listOption(v: string[] | undefined): string[] {
  return (v ?? []).flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x.length > 0)
}

function privilegedLevel(name: string): AuthzLevel {
  const level = toAuthzLevel(name)
  if (!level || !PRIVILEGED_LEVELS.includes(level)) {
    throw new CliError(`--allow-privileged takes privileged levels (${PRIVILEGED_LEVELS.join(', ')}), not "${name}"`, 2)
  }
  return level
}

function reservedUser(name: string): string {
  const user = asciiLower(name.replace(/@.*$/, ''))
  if (!RESERVED_USERS.has(user)) throw new CliError(`--allow-reserved-identity takes reserved user names (${[...RESERVED_USERS].join(', ')}), not "${name}"`, 2)
  return user
}

function overrideHint(o: OperatorOverride): string {
  switch (o.kind) {
    case 'privileged': return `pass --allow-privileged ${o.value} to mint it anyway`
    case 'reserved_user': return `pass ${o.role ? `--role ${o.role} and ` : ''}--allow-reserved-identity ${o.value} to mint it anyway`
    case 'any_audience': return 'pass --allow-any-audience to mint it anyway'
    case 'direct_attach': return `pass --allow-direct-attach to mint it for role ${o.value} anyway`
  }
}

/** Loads only the key this token needs: a pool that imported just its HTCondor key can still mint IDTOKENs. */
function signingKeysFor(kind: 'idtoken' | 'scitoken', store: KeyStore, kid: string, now: number): SigningKeys {
  const unused = (name: string) => { throw new TypeError(`the ${name} key is not loaded for this token`) }
  if (kind === 'idtoken') {
    const idtoken = store.loadIdTokenKey(kid)
    return { idtoken, get scitoken(): AsymmetricKey { return unused('SciToken') }, jwks: [] }
  }
  const scitoken = store.loadAsymmetricKeys(now).active
  return { get idtoken(): IdTokenKey { return unused('IDTOKEN') }, scitoken, jwks: [] }
}

/**
 * Issues through the same core as POST /token: the token exists for us only once its audit record is
 * committed. A store that cannot be opened or written means no token (fail closed), said in one line.
 */
async function issueAudited(decision: AllowedDecision, keys: SigningKeys, config: Config, io: CommandIo): Promise<IssuedTokenResult> {
  let store: BrokerStore
  try {
    store = await openBrokerStore(config, { sqliteWriter: 'inline' })
  } catch (err) {
    throw new CliError(`no token issued: cannot open the audit store: ${firstLine(err)}`)
  }
  try {
    const generations = new RevocationService({
      store, clock: systemClock, log: createLogger((l) => io.err(l.trimEnd())), maxTokenLifetime: maxTokenLifetime(config), refreshSeconds: config.revocation.refresh_seconds,
      // Only generations and blocks are read here; `revoke` is where labels are checked.
      knownLabels: () => ({ roles: new Set<string>(), sites: new Set<string>() }),
    })
    await generations.refresh()
    // A revoked identity gets no new token from the command line either, as at POST /token.
    const blocked = generations.blockedIdentity(decision.identity)
    if (blocked !== undefined) throw new CliError(`no token issued: identity ${decision.identity} is revoked (${blocked})`)
    const user = userInfo().username
    const caller: VerifiedSubject = { iss: 'cli', sub: `cli:${user}`, groups: [], scopes: [], exp: 0, claims: {} }
    let issued: IssuedTokenResult
    try {
      issued = await issueToken(decision, { requestId: randomUUID(), caller }, issueDepsFrom(config, { keys, audit: store, clock: systemClock, generations }))
    } catch (err) {
      if (err instanceof BrokerError || err instanceof OperatorError) throw err
      throw new CliError(`no token issued: its audit record could not be committed: ${firstLine(err)}`)
    }
    // Check what we signed before it leaves (the service does this once per key at start-up instead).
    if (issued.tokenKind === 'idtoken') verifyMintedIdToken(issued.token, keys.idtoken, issued.claims)
    else verifyMintedSciToken(issued.token, keys.scitoken, issued.claims)
    return issued
  } finally {
    await store.close()
  }
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!
}

/**
 * condor_token_create's way: sign with a key file the broker does not own. Neither policy nor audit can
 * see such a token, so say so on stderr every time, and refuse the broker's own keys: with those,
 * --key-file would be a way around every check and the audit log.
 */
function createWithKeyFile(
  keyFile: string, identity: string, authzNames: string[], lifetime: number | undefined,
  values: { key?: string | undefined; 'trust-domain'?: string | undefined; file?: string | undefined; role?: string | undefined; 'allow-privileged'?: string[] | undefined; 'allow-reserved-identity'?: string[] | undefined; 'allow-direct-attach'?: boolean | undefined },
  config: Config, io: CommandIo,
): number {
  if (values.role !== undefined || values['allow-privileged'] || values['allow-reserved-identity'] || values['allow-direct-attach']) {
    throw new CliError('--role and --allow-* apply to tokens signed with the broker\'s keys, not to --key-file', 2)
  }
  const now = systemClock.now()
  const kid = values.key ?? basename(keyFile)
  const bytes = readCondorKeyFile(keyFile)
  const own = findOwnKey(new KeyStore(`${config.data_dir}/keys`), keyFile, bytes, kid)
  if (own !== undefined) {
    throw new CliError(`--key-file ${keyFile} is ${own}; drop --key-file so the token is minted with the broker's keys, checked and audited`)
  }
  const key = prepareIdTokenKey(kid, bytes)
  const claims = buildIdTokenClaims({
    trustDomain: values['trust-domain'] ?? config.trust_domain, subject: identity, authz: authzNames.map(parseAuthzLevel),
    lifetimeSeconds: lifetime ?? config.idtoken.default_lifetime, now,
  })
  const output = values.file !== undefined ? openOutput(values.file, io) : undefined
  try {
    const token = mintIdToken(claims, key)
    verifyMintedIdToken(token, key, claims)
    io.err(`warning: signed with --key-file ${keyFile}: this token is not audited and not subject to broker policy`)
    deliver(token, output, io, (problem) => `token not written: ${problem}`)
  } finally {
    output?.abort()
  }
  return 0
}

/**
 * Creates the output's temp file next to FILE, or refuses in one line. No directory is created: a
 * mistyped path should be an error, not a new tree of directories holding a token.
 */
function openOutput(file: string, io: CommandIo): PendingReplacement {
  let pending: PendingReplacement
  try {
    pending = prepareFileReplacement(file, 0o600)
  } catch (err) {
    throw new CliError(`no token issued: ${outputProblem(file, err)}`)
  }
  if (CONDOR_EXCLUDED_NAME.test(basename(file))) io.err(`warning: HTCondor ignores token files named like ${basename(file)}`)
  return pending
}

/** Why FILE cannot be written, in words an operator can act on. */
function outputProblem(file: string, err: unknown): string {
  const dir = dirname(file)
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EISDIR': return `--file ${file} is a directory; name a file in it`
    case 'ENOENT': return existsSync(dir) ? `--file ${file}: cannot create a file in ${dir} (ENOENT)` : `--file ${file}: directory ${dir} does not exist`
    case 'ENOTDIR': return `--file ${file}: ${dir} is not a directory`
    case 'EACCES': case 'EPERM': return `--file ${file}: permission denied in ${dir}`
    case 'EROFS': return `--file ${file}: ${dir} is on a read-only file system`
    default: return `cannot write --file ${file}: ${firstLine(err)}`
  }
}

function deliver(token: string, output: PendingReplacement | undefined, io: CommandIo, notWritten: (problem: string) => string): void {
  if (output) {
    try {
      output.commit(`${token}\n`)
    } catch (err) {
      throw new CliError(notWritten(outputProblem(output.path, err)))
    }
    io.err(`wrote ${output.path} (mode 0600)`)
  } else {
    io.out(token)
  }
}

/** First line of a token file that is neither blank nor a comment, as HTCondor reads tokens.d files. */
function firstTokenLine(text: string): string | undefined {
  return text.split('\n').map((l) => l.trim()).find((l) => l.length > 0 && !l.startsWith('#'))
}

async function inspect(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(argv, {
    config: { type: 'string' },
    file: { type: 'string' },
    'key-file': { type: 'string' },
    'trust-domain': { type: 'string' },
    'issuer-keys': { type: 'string' },
    json: { type: 'boolean' },
  }, true)
  if (values.help) { io.out(HELP); return 0 }
  if (positionals.length > 1) throw new CliError('token inspect takes one token', 2)
  let token = positionals[0]
  if (values.file) {
    if (token) throw new CliError('give either TOKEN or --file, not both', 2)
    let text: string
    try { text = readFileSync(values.file, 'utf8') } catch (e) { throw new CliError(`cannot read ${values.file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`) }
    const line = firstTokenLine(text)
    if (!line) throw new CliError(`${values.file} holds no token line`)
    token = line
  }
  if (!token) throw new CliError('give a TOKEN or --file F', 2)
  const config = configFrom(values.config, io)
  const now = systemClock.now()
  const decoded = decodeCompact(token)
  const kid = typeof decoded?.header.kid === 'string' ? decoded.header.kid : ''
  const store = new KeyStore(`${config.data_dir}/keys`)
  const ctx: InspectContext = { now, trustDomain: values['trust-domain'] ?? config.trust_domain }
  if (values['issuer-keys']) ctx.issuerKeys = values['issuer-keys'].split(',').map((s) => s.trim()).filter(Boolean)
  if (values['key-file']) {
    readSecretFile(values['key-file'])
    ctx.idtokenKey = { kid, hmac: loadIdTokenKeyFile(values['key-file'], kid).hmac, source: `key file ${values['key-file']}` }
  } else if (kid && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(kid) && decoded?.header.alg?.toString().startsWith('HS') && store.hasCondorKey(kid)) {
    ctx.idtokenKey = { kid, hmac: store.loadIdTokenKey(kid).hmac, source: `key ${store.condorKeyPath(kid)}` }
  }
  try {
    ctx.jwks = store.loadAsymmetricKeys(now).jwks
  } catch (err) {
    if (!(err instanceof OperatorError)) throw err
  }
  const report = inspectToken(token, ctx)
  if (values.json) {
    io.out(JSON.stringify({ ...report, accepted: report.problems.length === 0 }, null, 2))
  } else {
    const kindName = report.kind === 'idtoken' ? 'HTCondor IDTOKEN' : report.kind === 'scitoken' ? 'SciToken/WLCG token' : 'unknown'
    io.out(`kind:      ${kindName}`)
    io.out(`header:    ${JSON.stringify(report.header)}`)
    for (const [k, v] of Object.entries(report.payload)) {
      const shown = (k === 'exp' || k === 'iat' || k === 'nbf') && typeof v === 'number' ? `${v} (${new Date(v * 1000).toISOString()})` : JSON.stringify(v)
      io.out(`${`${k}:`.padEnd(10)} ${shown}`)
    }
    io.out(`signature: ${report.signature}`)
    for (const w of report.warnings) io.out(`warning:   ${w}`)
    for (const p of report.problems) io.out(`REFUSED:   ${p}`)
    io.out(report.problems.length === 0 ? 'verdict:   would be accepted' : 'verdict:   would be refused')
  }
  return report.problems.length === 0 ? 0 : 1
}
