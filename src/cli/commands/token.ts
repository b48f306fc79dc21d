import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { loadConfig, type Config } from '../../config.ts'
import { OperatorError } from '../../errors.ts'
import { inspectToken, type InspectContext } from '../../inspect/inspect_token.ts'
import { parseAuthzLevel } from '../../issuance/authz.ts'
import { buildIdTokenClaims, mintIdToken } from '../../issuance/idtoken.ts'
import { buildSciTokenClaims, mintSciToken } from '../../issuance/scitoken.ts'
import { verifyMintedIdToken, verifyMintedSciToken } from '../../issuance/verify_minted.ts'
import { decodeCompact } from '../../issuance/jws.ts'
import { CONDOR_EXCLUDED_NAME } from '../../keys/condor_key_file.ts'
import { KeyStore, loadIdTokenKeyFile } from '../../keys/key_store.ts'
import { systemClock } from '../../lib/clock.ts'
import { readSecretFile, writeSecretFileAtomic } from '../../lib/secure_file.ts'
import { CliError, parse, positiveInt, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker token <create|inspect> [options]

token create --identity USER@DOMAIN --authz LEVEL [--authz LEVEL ...] [--lifetime SECONDS]
             [--key NAME] [--key-file FILE] [--trust-domain DOMAIN] [--file OUT]
    Mint an HTCondor IDTOKEN, as condor_token_create does. Without --file the token is printed;
    with --file it is written as HTCondor does (token + newline, mode 0600).
    LEVEL: READ WRITE NEGOTIATOR ADMINISTRATOR CONFIG DAEMON ADVERTISE_STARTD ADVERTISE_SCHEDD ADVERTISE_MASTER

token create --scitoken --sub SUB --aud AUD [--aud AUD ...] --scope "S1 S2" [--lifetime SECONDS]
             [--profile wlcg|scitokens2] [--file OUT]
    Mint a SciToken (ver scitoken:2.0) or WLCG token (wlcg.ver 1.0) signed by the broker's active key.

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
  }, true)
  if (values.help) { io.out(HELP); return 0 }
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}" (see token --help)`, 2)
  const config = configFrom(values.config, io)
  const now = systemClock.now()
  let token: string
  if (values.scitoken) {
    if (!values.sub) throw new CliError('--sub is required with --scitoken', 2)
    if (!values.aud?.length) throw new CliError('--aud is required with --scitoken (mandatory in SciTokens 2.0 and WLCG)', 2)
    if (!values.scope) throw new CliError('--scope is required with --scitoken', 2)
    const profile = values.profile ?? config.scitoken.profile
    if (profile !== 'wlcg' && profile !== 'scitokens2') throw new CliError(`--profile must be wlcg or scitokens2, got "${profile}"`, 2)
    const store = new KeyStore(`${config.data_dir}/keys`)
    const { active } = store.loadAsymmetricKeys(now)
    const claims = buildSciTokenClaims({
      issuer: config.issuer, subject: values.sub, audience: values.aud, scopes: [values.scope],
      lifetimeSeconds: positiveInt('lifetime', values.lifetime) ?? config.scitoken.default_lifetime, now, profile,
    })
    token = mintSciToken(claims, active)
    verifyMintedSciToken(token, active, claims)
  } else {
    if (!values.identity) throw new CliError('--identity USER@DOMAIN is required (or --scitoken)', 2)
    if (!values.authz?.length) throw new CliError('at least one --authz is required: an IDTOKEN without scopes is unrestricted', 2)
    const authz = values.authz.map(parseAuthzLevel)
    const keyFile = values['key-file']
    const kid = values.key ?? (keyFile ? basename(keyFile) : config.idtoken.key)
    const key = keyFile ? loadIdTokenKeyFile(keyFile, kid) : new KeyStore(`${config.data_dir}/keys`).loadIdTokenKey(kid)
    const claims = buildIdTokenClaims({
      trustDomain: values['trust-domain'] ?? config.trust_domain, subject: values.identity, authz,
      lifetimeSeconds: positiveInt('lifetime', values.lifetime) ?? config.idtoken.default_lifetime, now,
    })
    token = mintIdToken(claims, key)
    verifyMintedIdToken(token, key, claims)
  }
  if (values.file) {
    if (CONDOR_EXCLUDED_NAME.test(basename(values.file))) io.err(`warning: HTCondor ignores token files named like ${basename(values.file)}`)
    writeSecretFileAtomic(values.file, `${token}\n`)
    io.err(`wrote ${values.file} (mode 0600)`)
  } else {
    io.out(token)
  }
  return 0
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
