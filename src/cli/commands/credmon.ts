import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { MAX_MINIMUM_SECONDS, PROVIDER_PATTERN } from '../../contract/job_credentials.ts'
import { DEFAULT_CRED_DIR, DEFAULT_TOKEN_FILE, runCredmon, USE_FORMATS, type UseFormat } from '../../clients/credmon/index.ts'
import { createLogger, LOG_LEVELS, type LogLevel } from '../../lib/logger.ts'
import { replaceFileAtomic } from '../../lib/secure_file.ts'
import { CliError, parse, positiveInt, type CommandIo } from '../command.ts'
import { credmonConfigSnippet } from './credmon_config.ts'

export const CREDMON_HELP = `Usage: condor-token-broker credmon --broker URL --providers P,... [options]
       condor-token-broker credmon config --broker URL --providers P,... [--wrapper PATH] [--executable PATH] [options]
       condor-token-broker credmon wrapper [--out FILE]

Runs our credmon on an HTCondor access point: for every <user>/<provider>.top in the credential
directory that names one of --providers, keeps <user>/<provider>.use fresh with a job token from the
broker. Scans every 60 s and on SIGHUP; writes "pid" and touches CREDMON_COMPLETE (docs/credmon.md).

Options:
  --broker URL            the broker's base URL (https://host:port)
  --providers P,...       credential provider names served (letters, digits, "-")
  --cred-dir DIR          the credential directory (default ${DEFAULT_CRED_DIR})
  --token-file FILE       the credd's IDTOKEN presented to the broker (default ${DEFAULT_TOKEN_FILE})
  --ca-file FILE          PEM CA bundle for the broker's certificate (default: the system store)
  --use-format F          json (default, {"access_token","expires_in"}) or bare (token and newline)
  --minimum-seconds N     ask the broker not to reuse a token with less life left than N s
  --interval N            seconds between scans (default 60)
  --log-level L           error, warn or info (default info)

credmon config   prints the HTCondor configuration that runs this credmon and the job wrapper;
                 --wrapper PATH: where the job wrapper is (default /usr/libexec/condor-token-broker/job_wrapper.sh),
                 --executable PATH: this command for CREDMON_OAUTH (default /usr/bin/condor-token-broker, as
                 installed with npm install -g --prefix /usr; e.g. /usr/local/bin/condor-token-broker)
credmon wrapper  prints the job wrapper script (USER_JOB_WRAPPER), or writes it to --out with mode 0755`

/** Path of the shipped wrapper, next to the credmon's sources (copied as-is into dist/ by the build). */
export const JOB_WRAPPER_FILE = join(import.meta.dirname, '../../clients/credmon/job_wrapper.sh')

const RUN_OPTIONS = {
  broker: { type: 'string' },
  providers: { type: 'string' },
  'cred-dir': { type: 'string' },
  'token-file': { type: 'string' },
  'ca-file': { type: 'string' },
  'use-format': { type: 'string' },
  'minimum-seconds': { type: 'string' },
  interval: { type: 'string' },
  'log-level': { type: 'string' },
  // The condor_master may start a daemon with -f (stay in the foreground): we always do.
  foreground: { type: 'boolean', short: 'f' },
} as const

/** `credmon`, `credmon config`, `credmon wrapper`. */
export async function credmonCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub] = argv
  if (sub === 'config') return configCommand(argv.slice(1), io)
  if (sub === 'wrapper') return wrapperCommand(argv.slice(1), io)
  if (sub !== undefined && !sub.startsWith('-')) throw new CliError(`unknown credmon command "${sub}" (see credmon --help)`, 2)
  const { values } = parse(argv, RUN_OPTIONS)
  if (values.help) { io.out(CREDMON_HELP); return 0 }
  const s = settings(values)
  const level = (values['log-level'] ?? 'info') as LogLevel
  if (!LOG_LEVELS.includes(level)) throw new CliError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`, 2)
  checkCredDir(s.credDir)
  if (s.caFile) {
    try { readFileSync(s.caFile) } catch (err) { throw new CliError(`cannot read --ca-file ${s.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`) }
  }
  await runCredmon(s, createLogger(undefined, { level }))
  return 0
}

function settings(values: { broker?: string; providers?: string; 'cred-dir'?: string; 'token-file'?: string; 'ca-file'?: string; 'use-format'?: string; 'minimum-seconds'?: string; interval?: string }) {
  const brokerUrl = brokerOption(values.broker)
  const providers = providersOption(values.providers)
  const useFormat = (values['use-format'] ?? 'json') as UseFormat
  if (!USE_FORMATS.includes(useFormat)) throw new CliError(`--use-format must be json or bare, got "${values['use-format']}"`, 2)
  const minimumSeconds = positiveInt('minimum-seconds', values['minimum-seconds'])
  // The broker answers a larger one with 400: every request would fail and no .use would ever be written.
  if (minimumSeconds !== undefined && minimumSeconds > MAX_MINIMUM_SECONDS) throw new CliError(`--minimum-seconds must be at most ${MAX_MINIMUM_SECONDS}, got "${values['minimum-seconds']}"`, 2)
  const intervalSeconds = positiveInt('interval', values.interval)
  return {
    credDir: values['cred-dir'] ?? DEFAULT_CRED_DIR,
    brokerUrl,
    providers,
    tokenFile: values['token-file'] ?? DEFAULT_TOKEN_FILE,
    useFormat,
    ...(values['ca-file'] ? { caFile: values['ca-file'] } : {}),
    ...(minimumSeconds !== undefined ? { minimumSeconds } : {}),
    ...(intervalSeconds !== undefined ? { intervalSeconds } : {}),
  }
}

/**
 * The credential directory must exist (the credd creates it) and be closed to others: it holds every
 * user's tokens. HTCondor's credmons refuse such a directory for the same reason.
 */
function checkCredDir(dir: string): void {
  let st
  try { st = statSync(dir) } catch (err) {
    throw new CliError(`--cred-dir ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'cannot stat'} (the credd creates it: SEC_CREDENTIAL_DIRECTORY_OAUTH)`)
  }
  if (!st.isDirectory()) throw new CliError(`--cred-dir ${dir} is not a directory`)
  if (st.mode & 0o007) throw new CliError(`--cred-dir ${dir} has mode ${(st.mode & 0o7777).toString(8)}; others must have no access (chmod o-rwx ${dir})`)
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]'])

function brokerOption(value: string | undefined): string {
  if (!value) throw new CliError('--broker URL is required (the broker\'s base URL, https://host:port)', 2)
  let url: URL
  try { url = new URL(value) } catch { throw new CliError(`--broker must be a URL, got "${value}"`, 2) }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new CliError('--broker must be an http(s) URL', 2)
  // The credd's token goes with every request: plain HTTP only where it cannot leave the host.
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) throw new CliError('--broker must be https (plain http only to a loopback address)', 2)
  if (url.username || url.password || url.search || url.hash) throw new CliError('--broker must be a plain base URL (no credentials, query or fragment)', 2)
  return value.replace(/\/+$/, '')
}

function providersOption(value: string | undefined): string[] {
  if (!value) throw new CliError('--providers P,... is required (the credential providers this credmon serves)', 2)
  const list = value.split(',').map((p) => p.trim()).filter(Boolean)
  const bad = list.find((p) => !PROVIDER_PATTERN.test(p))
  if (bad !== undefined || list.length === 0) throw new CliError(`--providers: "${bad ?? value}" is not a provider name (letters, digits and "-"; "_" separates a handle)`, 2)
  return list
}

async function configCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parse(argv, { ...RUN_OPTIONS, wrapper: { type: 'string' }, executable: { type: 'string' } })
  if (values.help) { io.out(CREDMON_HELP); return 0 }
  const s = settings(values)
  io.out(credmonConfigSnippet({
    ...s,
    wrapperPath: values.wrapper ?? '/usr/libexec/condor-token-broker/job_wrapper.sh',
    executable: values.executable ?? '/usr/bin/condor-token-broker',
  }))
  return 0
}

async function wrapperCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' } })
  if (values.help) { io.out(CREDMON_HELP); return 0 }
  const script = readFileSync(JOB_WRAPPER_FILE, 'utf8')
  if (!values.out) { io.out(script.replace(/\n$/, '')); return 0 }
  try {
    replaceFileAtomic(values.out, script, 0o755)
  } catch (err) {
    throw new CliError(`cannot write ${values.out}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  io.err(`wrote ${values.out}`)
  return 0
}
