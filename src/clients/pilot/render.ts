import { readFileSync } from 'node:fs'
import { DEFAULT_PILOT_MAX_RESTARTS, MAX_PILOT_RESTARTS, PILOT_ENROLMENT_TOKEN_TYPE } from '../../contract/pilot.ts'
import { TOKEN_TYPE } from '../../contract/token_exchange.ts'

/** What an operator chooses for one pilot job; everything else the script learns from SLURM at run time. */
export interface PilotScriptOptions {
  site: string
  partition: string
  account?: string
  /** SLURM walltime: minutes, `H:MM:SS` or `D-HH:MM:SS`. */
  walltime: string
  /** Nodes per job; each node redeems the credential once, so its pilot_count must be at least this (docs/pilots-script.md). */
  nodes: number
  cpus: number
  /** Memory per node in MB, as `--mem` takes it. */
  memMb: number
  /** Seconds before the walltime at which the pilot drains: the early-warning signal and the master's own timer. */
  drainSeconds: number
  /** Seconds the pilot command gets to stop after SIGTERM before SIGKILL; below the drain margin. */
  graceSeconds?: number
  /** The broker's base URL (https); the script posts to `<url>/token`. */
  brokerUrl: string
  caFile: string
  /** Where the provisioning step stages the enrolment credential; read at run time and deleted. */
  enrolmentFile: string
  logDir: string
  collector: string
  trustDomain: string
  allowedOwners: string[]
  /** Node-local base directory; empty means `$TMPDIR` (or /tmp) on the node. */
  localBase?: string
  command?: string
  idleShutdownSeconds?: number
  /**
   * SLURM restarts (requeue, preemption, node failure) after which the pilot may still redeem: the staged
   * credential stays until then, and 0 renders `--no-requeue`. Default DEFAULT_PILOT_MAX_RESTARTS, the
   * broker's default pilot.max_restarts; a higher value than the policy's only earns a refusal.
   */
  maxRequeues?: number
}

/** An option value the renderer refuses; the message names the option and never needs quoting to be read. */
export class PilotScriptInputError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PilotScriptInputError'
  }
}

/** The largest `sig_time` sbatch's `--signal=[B:]sig@sig_time` accepts (sbatch(1)). */
export const MAX_SIGNAL_SECONDS = 65_535

const TEMPLATE_URL = new URL('./pilot.sbatch.tmpl', import.meta.url)

// Allow-lists, not escaping: every value lands in bash (and in #SBATCH lines sbatch parses itself, and in
// ClassAd strings), so a value is accepted only if it is inert in all three without any quoting.
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
const PATH = /^\/[A-Za-z0-9._/-]{0,1023}$/
const HOST_PORT = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::\d{1,5})?$/
const TRUST_DOMAIN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$/
const USER = /^[a-z_][a-z0-9_.-]{0,31}$/
const WORD = /^[A-Za-z0-9_./=:,+-]{1,255}$/
const BROKER_URL = /^https:\/\/[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::\d{1,5})?(?:\/[A-Za-z0-9._~-]+)*\/?$/

function refuse(option: string, why: string): never {
  throw new PilotScriptInputError(`--${option} ${why}`)
}

function name(option: string, value: string): string {
  if (!NAME.test(value)) refuse(option, 'must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit')
  return value
}

function path(option: string, value: string): string {
  if (!PATH.test(value) || value.split('/').some((s) => s === '..')) {
    refuse(option, 'must be an absolute path of letters, digits, ".", "_", "-" and "/" with no ".." part')
  }
  return value.length > 1 ? value.replace(/\/+$/, '') : value
}

function whole(option: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) refuse(option, `must be a whole number from ${min} to ${max}`)
  return value
}

/** SLURM walltime in seconds: `M`, `H:MM:SS` or `D-HH:MM:SS` (the forms sbatch -t takes that we accept). */
export function walltimeSeconds(value: string): number {
  let m = /^(\d{1,6})$/.exec(value)
  if (m) return Number(m[1]) * 60
  m = /^(?:(\d{1,3})-)?(\d{1,2}):([0-5]\d):([0-5]\d)$/.exec(value)
  if (m) return Number(m[1] ?? 0) * 86_400 + Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4])
  refuse('walltime', 'must be minutes, H:MM:SS or D-HH:MM:SS')
}

function brokerUrl(value: string): string {
  if (!BROKER_URL.test(value)) refuse('broker', 'must be an https:// URL with a host name, optional port and a plain path')
  const port = new URL(value).port
  if (port !== '' && Number(port) > 65_535) refuse('broker', 'has a port above 65535')
  return value.replace(/\/+$/, '')
}

function hostPort(option: string, value: string, defaultPort: number): string {
  if (!HOST_PORT.test(value)) refuse(option, 'must be host or host:port')
  const [host, port] = value.split(':')
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65_535)) refuse(option, 'has a port outside 1-65535')
  return port === undefined ? `${host}:${defaultPort}` : value
}

/**
 * Renders the sbatch pilot script: the bash logic lives in pilot.sbatch.tmpl and only validated, shell-inert
 * values are substituted into it. Throws PilotScriptInputError naming the first bad option.
 * @see docs/pilots-script.md
 */
export function renderPilotScript(options: PilotScriptOptions, template = readFileSync(TEMPLATE_URL, 'utf8')): string {
  const site = name('site', options.site)
  const partition = name('partition', options.partition)
  const account = options.account === undefined ? undefined : name('account', options.account)
  const walltime = walltimeSeconds(options.walltime)
  if (walltime < 120) refuse('walltime', 'must be at least 2 minutes')
  // sbatch(1): --signal's sig_time "may not exceed 65535 seconds"; sbatch would refuse the whole script at submit.
  // Refused rather than clamped: the same margin sets the master's own shutdown timer, and a quietly shorter
  // warning than the one asked for would drain jobs later than the admin planned.
  if (Number.isSafeInteger(options.drainSeconds) && options.drainSeconds > MAX_SIGNAL_SECONDS) {
    refuse('drain', `must be at most ${MAX_SIGNAL_SECONDS} seconds (the longest sbatch --signal warning)`)
  }
  const drain = whole('drain', options.drainSeconds, 1, walltime - 1)
  const grace = whole('grace', options.graceSeconds ?? Math.max(1, drain - 60), 1, Math.max(1, drain - 1))
  if (drain > 1 && grace >= drain) refuse('grace', 'must be below the drain margin')
  const owners = options.allowedOwners
  if (owners.length === 0) refuse('allowed-owners', 'must name at least one user')
  for (const o of owners) if (!USER.test(o)) refuse('allowed-owners', 'must be user names (a-z, 0-9, "_", ".", "-")')
  const command = (options.command ?? 'condor_master -f').split(' ')
  if (command.length > 32 || command.some((w) => !WORD.test(w))) {
    refuse('command', 'must be words of letters, digits and _ . / = : , + - separated by single spaces')
  }
  const maxRequeues = whole('max-requeues', options.maxRequeues ?? DEFAULT_PILOT_MAX_RESTARTS, 0, MAX_PILOT_RESTARTS)
  if (!TRUST_DOMAIN.test(options.trustDomain)) refuse('trust-domain', 'must be a host-like name (letters, digits, ".", "_", ":", "-")')

  const values: Record<string, string> = {
    SITE: site,
    PARTITION: partition,
    ACCOUNT_LINE: account === undefined ? '' : `#SBATCH -A ${account}\n`,
    // A pilot that may not redeem after a restart should not be restarted: SLURM cancels it instead of requeueing.
    REQUEUE_LINE: maxRequeues === 0 ? '#SBATCH --no-requeue\n' : '',
    MAX_REQUEUES: String(maxRequeues),
    // Above one node the batch shell fans out with srun, one pilot task per node (docs/pilots-script.md).
    NODES: String(whole('nodes', options.nodes, 1, 1000)),
    CPUS: String(whole('cpus', options.cpus, 1, 4096)),
    MEM_MB: String(whole('mem', options.memMb, 1, 64 * 1024 * 1024)),
    WALLTIME_MINUTES: String(Math.ceil(walltime / 60)),
    DRAIN: String(drain),
    GRACE: String(grace),
    LOG_DIR: path('log-dir', options.logDir),
    BROKER_URL: brokerUrl(options.brokerUrl),
    CA_FILE: path('ca-file', options.caFile),
    ENROLMENT_FILE: path('enrolment-file', options.enrolmentFile),
    COLLECTOR: hostPort('collector', options.collector, 9618),
    TRUST_DOMAIN: options.trustDomain,
    ALLOWED_OWNERS: owners.join(','),
    LOCAL_BASE: options.localBase ? path('local-dir', options.localBase) : '',
    IDLE_SHUTDOWN: String(whole('idle-shutdown', options.idleShutdownSeconds ?? 1200, 0, 7 * 86_400)),
    COMMAND: command.map((w) => `'${w}'`).join(' '),
    ENROLMENT_TOKEN_TYPE: PILOT_ENROLMENT_TOKEN_TYPE,
    IDTOKEN_TOKEN_TYPE: TOKEN_TYPE.idtoken,
  }
  const out = template.replace(/\{\{([A-Z_]+)\}\}/g, (_, key: string) => {
    const v = values[key]
    if (v === undefined) throw new TypeError(`pilot template names an unknown value {{${key}}}`)
    return v
  })
  if (out.includes('{{')) throw new TypeError('pilot template left a placeholder unfilled')
  return out
}
