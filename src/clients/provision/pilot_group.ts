import { DEFAULT_PILOT_MAX_RESTARTS, MAX_PILOT_COUNT } from '../../contract/pilot.ts'
import { PilotScriptInputError, renderPilotScript, type PilotScriptOptions } from '../pilot/render.ts'
import type { LoadedTemplate } from './template/load_template.ts'
import type { ResolvedNode } from './template/resolve_template.ts'

/** What only the broker and the central manager tell render; the rest of the script comes from the properties. */
export interface PilotContext { brokerUrl: string; collector: string; trustDomain: string }

/** The sbatch renderer's options for one SLURM pilot group: the same renderer as `pilot script`. */
export function pilotScriptOptions(props: Record<string, unknown>, ctx: PilotContext): PilotScriptOptions {
  return {
    site: String(props.site), partition: String(props.partition), walltime: String(Math.ceil(Number(props.walltime_s) / 60)),
    nodes: Number(props.nodes ?? 1), cpus: Number(props.cpus), memMb: Number(props.mem_mb),
    drainSeconds: Number(props.drain_margin_s ?? 300), brokerUrl: ctx.brokerUrl, caFile: String(props.broker_ca_file),
    enrolmentFile: String(props.enrolment_file), logDir: String(props.log_dir), collector: ctx.collector,
    trustDomain: ctx.trustDomain, allowedOwners: props.allowed_owners as string[],
    ...(props.account !== undefined ? { account: String(props.account) } : {}),
    ...(props.local_dir !== undefined ? { localBase: String(props.local_dir) } : {}),
    ...(props.idle_shutdown_s !== undefined ? { idleShutdownSeconds: Number(props.idle_shutdown_s) } : {}),
    ...(props.command !== undefined ? { command: String(props.command) } : {}),
    ...(props.max_requeues !== undefined ? { maxRequeues: Number(props.max_requeues) } : {}),
  }
}

/**
 * What a pilot group's enrolment credential is asked for (docs/provisioning.md). Every run of the job, the first
 * and each of up to max_requeues requeued ones, redeems once per node; one spare redemption per node covers a
 * retry after a lost answer (the broker counts the redemption it committed, the pilot never saw it). The
 * credential must stay redeemable through a queue wait and a walltime per run, or a late requeue finds it expired.
 */
export function pilotCredentialAsk(props: Record<string, unknown>): { count: number; lifetime: number } {
  const nodes = Number(props.nodes ?? 1)
  const runs = 1 + Number(props.max_requeues ?? DEFAULT_PILOT_MAX_RESTARTS)
  return { count: nodes * (runs + 1), lifetime: runs * (Number(props.queue_estimate_s ?? 3600) + Number(props.walltime_s)) }
}

/** Where a group's count and lifetime come from, in the template's property names, so a refusal says what to change. */
export function pilotAskWords(props: Record<string, unknown>): { count: string; lifetime: string } {
  const { count, lifetime } = pilotCredentialAsk(props)
  const r = Number(props.max_requeues ?? DEFAULT_PILOT_MAX_RESTARTS)
  return {
    count: `pilot_count ${count} (nodes ${Number(props.nodes ?? 1)} × (max_requeues ${r} + 2))`,
    lifetime: `lifetime ${lifetime}s ((max_requeues ${r} + 1) × (queue_estimate_s ${Number(props.queue_estimate_s ?? 3600)} + walltime_s ${Number(props.walltime_s)}))`,
  }
}

export const COUNT_FIX = 'lower nodes or max_requeues, or raise max_count'
export const LIFETIME_FIX = 'lower max_requeues, walltime_s or queue_estimate_s, or raise enrolment_lifetime.max (or give the grant up_to: true, which trims it)'

/** The pilot grant's bounds as POST /admin/policy/explain returns them for an enrolment. */
export interface PilotGrantLimits {
  max_count: number; enrolment_lifetime: { max: number }; up_to: boolean; max_restarts?: number
  /** pilot.identity, constants filled in: the sub every pilot token carries ({site}, {enrolment}, {slurm_job_id}, {node} remain). */
  identity?: string
}

/**
 * Which of the group's asks the deciding grant cannot meet, worded with the properties that make it and the
 * value to change; undefined when both fit (a lifetime above the maximum fits, trimmed, under up_to).
 */
export function pilotAskProblem(props: Record<string, unknown>, limits: PilotGrantLimits, rule: string | undefined): string | undefined {
  const ask = pilotCredentialAsk(props)
  const words = pilotAskWords(props)
  const of = rule ? ` (rule ${rule})` : ''
  if (ask.count > limits.max_count) return `${words.count} exceeds the policy's pilot.max_count ${limits.max_count}${of}: ${COUNT_FIX}`
  if (ask.lifetime > limits.enrolment_lifetime.max && !limits.up_to) {
    return `${words.lifetime} exceeds the policy's pilot.enrolment_lifetime.max ${limits.enrolment_lifetime.max}s${of}: ${LIFETIME_FIX}`
  }
  return undefined
}

/** A group asking for more pilot tokens than any enrolment credential may carry (MAX_PILOT_COUNT), whatever the policy. */
export function pilotCountBeyondBroker(props: Record<string, unknown>): string {
  return `${pilotAskWords(props).count} exceeds ${MAX_PILOT_COUNT}, the most any pilot enrolment may carry: lower nodes or max_requeues`
}

/**
 * A group whose script keeps the credential for more requeues than the grant lets a run redeem: the enrolment
 * is granted, but runs past max_restarts are refused and their nodes stay without startds. Said by plan (which
 * sees the grant), since render cannot tell.
 */
export function pilotRestartsProblem(props: Record<string, unknown>, limits: PilotGrantLimits, rule: string | undefined): string | undefined {
  const r = Number(props.max_requeues ?? DEFAULT_PILOT_MAX_RESTARTS)
  if (limits.max_restarts === undefined || r <= limits.max_restarts) return undefined
  return `max_requeues ${r} is above the policy's pilot.max_restarts ${limits.max_restarts}${rule ? ` (rule ${rule})` : ''}: runs after restart ${limits.max_restarts} will be refused; lower max_requeues or raise max_restarts`
}

/**
 * A broker's refusal of a group's enrolment, worded as plan words it: the broker's reason says which bound the
 * ask broke and the bound (`pilot_count 12 exceeds the maximum 8 …`, `lifetime 43200s exceeds the maximum 32400s …`),
 * the properties say where the ask came from. Any other refusal is passed on with the ask spelt out.
 */
export function pilotRefusal(node: string, props: Record<string, unknown>, description: string): string {
  const words = pilotAskWords(props)
  const count = /^pilot_count \d+ exceeds the maximum (\d+)/.exec(description)
  if (count) return `${node}: the broker refuses the pilot enrolment: ${words.count} exceeds the policy's pilot.max_count ${count[1]}: ${COUNT_FIX}`
  const life = /^lifetime \d+s exceeds the maximum (\d+)s/.exec(description)
  if (life) return `${node}: the broker refuses the pilot enrolment: ${words.lifetime} exceeds the policy's pilot.enrolment_lifetime.max ${life[1]}s: ${LIFETIME_FIX}`
  return `${node}: the broker refuses the pilot enrolment of ${words.count} and ${words.lifetime}: ${description}`
}

// The renderer names its options as `pilot script` spells them; a template author knows the properties.
const PROPERTY_OF: Record<string, string> = {
  site: 'site', partition: 'partition', account: 'account', walltime: 'walltime_s', nodes: 'nodes', cpus: 'cpus', mem: 'mem_mb',
  drain: 'drain_margin_s', 'log-dir': 'log_dir', 'ca-file': 'broker_ca_file', 'enrolment-file': 'enrolment_file',
  'allowed-owners': 'allowed_owners', 'local-dir': 'local_dir', 'idle-shutdown': 'idle_shutdown_s', command: 'command',
  'max-requeues': 'max_requeues',
}

// Stand-ins for the collector and trust domain, known only as render goes; each passes the renderer's own checks.
const STAND_IN: Omit<PilotContext, 'brokerUrl'> = { collector: 'collector.invalid', trustDomain: 'pool.invalid' }

/**
 * Renders the group's script once with stand-ins for what the broker supplies, so a property the renderer
 * refuses (a command with shell syntax, a drain margin longer than the walltime…) fails at its line in the
 * template, before the broker is asked for this group's credential.
 */
export function checkPilotGroup(t: LoadedTemplate, n: ResolvedNode, brokerUrl: string): void {
  // Not a script option, but it sizes the credential's lifetime (pilotCredentialAsk): a negative wait would ask
  // the broker for one shorter than the walltime, or below zero, refused only after the other nodes' tokens.
  const queue = n.properties.queue_estimate_s
  if (queue !== undefined && !(Number.isSafeInteger(queue) && (queue as number) >= 0)) {
    t.fail(['topology_template', 'node_templates', n.name, 'properties', 'queue_estimate_s'],
      `${n.name}.queue_estimate_s (${JSON.stringify(queue)?.slice(0, 60)}) must be a whole number of seconds, 0 or more`)
  }
  try {
    // The broker's URL is --broker, known before anything is asked: the real one, so a URL the script
    // refuses (an IPv6 literal, a query) is refused here too, not after every other node's credentials.
    renderPilotScript(pilotScriptOptions(n.properties, { ...STAND_IN, brokerUrl }))
  } catch (err) {
    if (!(err instanceof PilotScriptInputError)) throw err
    const m = /^--([a-z-]+) (.*)$/.exec(err.message)
    const prop = m ? PROPERTY_OF[m[1]!] : undefined
    const base = ['topology_template', 'node_templates', n.name, 'properties']
    if (!prop) t.fail(base, `${n.name}: the sbatch pilot refuses it: ${err.message}`)
    const value = JSON.stringify(n.properties[prop!])?.slice(0, 60)
    t.fail(n.properties[prop!] === undefined ? base : [...base, prop!], `${n.name}.${prop} ${value === undefined ? '(unset)' : `(${value})`} ${m![2]}`)
  }
}

/** The group's script, with the broker's values; a refusal here (the trust domain) is one line naming the group. */
export function renderPilotGroup(node: string, props: Record<string, unknown>, ctx: PilotContext): string {
  try {
    return renderPilotScript(pilotScriptOptions(props, ctx))
  } catch (err) {
    if (err instanceof PilotScriptInputError) throw new Error(`pilot group ${node}: ${err.message}`)
    throw err
  }
}
