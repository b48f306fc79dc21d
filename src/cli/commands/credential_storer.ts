import { spawnSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { credentialName, HANDLE_PATTERN, PROVIDER_PATTERN, REGISTRATION_MODES, type RegistrationMode } from '../../contract/job_credentials.ts'
import { visibleText } from '../../contract/oauth_error.ts'
import { discoverBearerToken } from '../../clients/bearer_token_discovery.ts'
import { registerCredential } from '../../clients/credential_storer/register_credential.ts'
import { CliError, parse, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker credential-storer [-v] [--broker URL] [--ca-file FILE] [--mode broker|vault] [--print] [--force] SERVICE...

Registers the submitting user's job credentials at the broker, for HTCondor's SEC_CREDENTIAL_STORER
(condor_submit runs it with the use_oauth_services names). Each SERVICE is a provider name, optionally
followed by &handle=NAME, &scopes=S1,S2 and &audience=AUD as condor_submit passes them.

The user's IAM token is found by WLCG bearer-token discovery: BEARER_TOKEN, BEARER_TOKEN_FILE,
$XDG_RUNTIME_DIR/bt_u<uid>, /tmp/bt_u<uid>. For each service the broker answers with what the credd keeps
in <provider>[_<handle>].top; when condor_store_cred is on PATH (or in /usr/sbin) it is handed over with
"condor_store_cred add-oauth -s NAME [-S scopes] [-A audience] -i -", else printed on stdout, one JSON
object per line. A service the credd already holds is left alone unless --force.

  --broker URL     the broker (default $CONDOR_TOKEN_BROKER_URL)
  --ca-file FILE   CA to verify the broker with (default $CONDOR_TOKEN_BROKER_CA_FILE, else the system CAs)
  --mode MODE      broker: .top for condor-token-broker's credmon (default, or $CONDOR_TOKEN_BROKER_STORER_MODE);
                   vault: .top for HTCondor's Vault credmon (the broker's Vault-compatible listener)
  --print          print the .top JSON instead of calling condor_store_cred
  --force          register even when the credd already holds the service
  -v               say what is done, on stderr
Exit status: 0 all stored, 1 a failure (one line on stderr), 2 usage.`

interface Service { provider: string; storeName: string; handle?: string; scopes?: string; audience?: string }

/** `cms`, `cms&handle=read&scopes=a,b&audience=x` (HTCondor's storer syntax; `scope=` is accepted too). */
export function parseService(arg: string): Service {
  const [provider, ...opts] = arg.split('&')
  if (!provider || !PROVIDER_PATTERN.test(provider)) throw new CliError(`"${provider ?? ''}" is not a credential provider name (letters, digits and "-")`, 2)
  const s: Service = { provider, storeName: provider }
  let handle: string | undefined
  for (const o of opts) {
    const eq = o.indexOf('=')
    const k = eq < 0 ? o : o.slice(0, eq)
    const v = eq < 0 ? '' : o.slice(eq + 1)
    if (k === 'handle' && HANDLE_PATTERN.test(v)) handle = v
    else if ((k === 'scopes' || k === 'scope') && v !== '') s.scopes = v.split(/[\s,]+/).filter(Boolean).join(' ')
    else if (k === 'audience' && v !== '') s.audience = v
    else if (k === 'options') continue
    else throw new CliError(`cannot read "${o}" in service "${arg}"`, 2)
  }
  if ((s.scopes !== undefined || s.audience !== undefined) && handle === undefined) throw new CliError(`service "${arg}": reduced scopes or audience need a handle`, 2)
  if (handle !== undefined) {
    s.handle = handle
    s.storeName = credentialName(provider, handle)
  }
  return s
}

/** condor_store_cred on PATH, else in /usr/sbin (where HTCondor installs it), else undefined. */
function findStoreCred(env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of [...(env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin']) {
    const p = join(dir, 'condor_store_cred')
    try { accessSync(p, constants.X_OK); return p } catch { /* next */ }
  }
  return undefined
}

export async function credentialStorerCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(argv, {
    broker: { type: 'string' }, 'ca-file': { type: 'string' }, mode: { type: 'string' }, print: { type: 'boolean' }, force: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' }, debug: { type: 'boolean', short: 'd' },
  }, true)
  if (values.help) { io.out(HELP); return 0 }
  if (positionals.length === 0) throw new CliError('name at least one service (see credential-storer --help)', 2)
  const services = positionals.map(parseService)
  const broker = values.broker ?? io.env.CONDOR_TOKEN_BROKER_URL
  if (!broker) throw new CliError('no broker: give --broker URL or set CONDOR_TOKEN_BROKER_URL', 2)
  const mode = (values.mode ?? io.env.CONDOR_TOKEN_BROKER_STORER_MODE ?? 'broker') as RegistrationMode
  if (!REGISTRATION_MODES.includes(mode)) throw new CliError(`--mode must be broker or vault, got "${mode}"`, 2)
  const caFile = values['ca-file'] ?? io.env.CONDOR_TOKEN_BROKER_CA_FILE
  const verbose = (s: string) => { if (values.verbose || values.debug) io.err(s) }
  const storeCred = values.print ? undefined : findStoreCred(io.env)
  let token: string
  try {
    const found = discoverBearerToken(io.env, process.getuid?.() ?? 0)
    verbose(`using the bearer token from ${found.source}`)
    token = found.token
  } catch (err) {
    throw new CliError((err as Error).message)
  }
  for (const s of services) {
    if (storeCred && !values.force) {
      const q = spawnSync(storeCred, ['query-oauth', '-s', s.storeName], { stdio: 'ignore', env: io.env })
      if (q.status === 0) { verbose(`the credd already holds ${s.storeName}; nothing to do`); continue }
    }
    let res
    try {
      res = await registerCredential(broker, token, { provider: s.provider, mode, ...(s.handle ? { handle: s.handle } : {}), ...(s.scopes ? { scopes: s.scopes } : {}), ...(s.audience ? { audience: s.audience } : {}) }, caFile ? { caFile } : {})
    } catch (err) {
      throw new CliError(`${s.storeName}: ${(err as Error).message}`)
    }
    const top = JSON.stringify(res.top)
    if (!storeCred) { io.out(top); continue }
    const args = ['add-oauth', '-s', s.storeName, ...(s.scopes ? ['-S', s.scopes.split(' ').join(',')] : []), ...(s.audience ? ['-A', s.audience] : []), '-i', '-']
    const r = spawnSync(storeCred, args, { input: `${top}\n`, stdio: ['pipe', 'ignore', 'pipe'], env: io.env })
    if (r.status !== 0) throw new CliError(`${s.storeName}: condor_store_cred failed (exit ${r.status ?? r.signal})${r.stderr?.length ? `: ${r.stderr.toString('utf8').trim().split('\n')[0]}` : ''}`)
    // The user name is the broker's answer, printed to the user's terminal: no control characters as themselves.
    verbose(`stored ${s.storeName} for ${visibleText(res.user)}`)
  }
  return 0
}
