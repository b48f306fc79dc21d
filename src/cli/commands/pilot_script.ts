import { writeFileSync } from 'node:fs'
import { PilotScriptInputError, renderPilotScript } from '../../clients/pilot/render.ts'
import { CliError, parse, positiveInt, type CommandIo } from '../command.ts'

export const PILOT_SCRIPT_HELP = `pilot script --site S --partition P --walltime T --nodes N --cpus C --mem MB
             --broker URL --ca-file F --enrolment-file F --log-dir D --collector HOST[:PORT]
             --trust-domain D --allowed-owners U,... [--account A] [--drain S] [--grace S]
             [--local-dir D] [--command "condor_master -f"] [--idle-shutdown S] [--max-requeues N]
             [--out FILE]
    Write a self-contained sbatch script (bash, coreutils and curl on the node; no Node.js). At run time
    each node redeems the enrolment credential staged at --enrolment-file for an IDTOKEN (the file is
    deleted when no later run of the job can need it), writes the HTCondor configuration, starts the command and renews the token at about half
    its life until the job's end minus --drain (default 300 s). On SIGUSR1 (sent --drain seconds before
    the walltime; at most 65535, sbatch's --signal limit) or SIGTERM it stops the command gracefully,
    SIGKILL after --grace seconds.
    With --nodes N > 1 the batch shell starts one task per node with srun and hands each the credential
    on stdin; the credential's pilot_count must be at least N (the broker refuses extra redemptions).
    A requeued or preempted job (same job id, SLURM_RESTART_COUNT one higher) redeems again: the staged
    credential stays until the job's run --max-requeues (default 2, as the broker's pilot.max_restarts),
    or until a run ends other than by SIGTERM; 0 renders --no-requeue and deletes it at the first start.
    --walltime is minutes, H:MM:SS or D-HH:MM:SS; --trust-domain must equal the IDTOKEN's iss.
    Every value must be shell-inert (letters, digits and a few marks): anything else is refused.`

/** `pilot script`: renders the sbatch pilot; the script's logic lives in src/clients/pilot/pilot.sbatch.tmpl. */
export async function pilotScriptCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parse(argv, {
    site: { type: 'string' }, partition: { type: 'string' }, account: { type: 'string' },
    walltime: { type: 'string' }, nodes: { type: 'string' }, cpus: { type: 'string' }, mem: { type: 'string' },
    drain: { type: 'string' }, grace: { type: 'string' }, broker: { type: 'string' }, 'ca-file': { type: 'string' },
    'enrolment-file': { type: 'string' }, 'log-dir': { type: 'string' }, collector: { type: 'string' },
    'trust-domain': { type: 'string' }, 'allowed-owners': { type: 'string' }, 'local-dir': { type: 'string' },
    command: { type: 'string' }, 'idle-shutdown': { type: 'string' }, 'max-requeues': { type: 'string' }, out: { type: 'string' },
  })
  if (values.help) { io.out(PILOT_SCRIPT_HELP); return 0 }
  const required = ['site', 'partition', 'walltime', 'nodes', 'cpus', 'mem', 'broker', 'ca-file', 'enrolment-file',
    'log-dir', 'collector', 'trust-domain', 'allowed-owners'] as const
  for (const r of required) if (values[r] === undefined) throw new CliError(`--${r} is required (see pilot script --help)`, 2)
  const idle = values['idle-shutdown']
  const requeues = values['max-requeues']
  if (requeues !== undefined && !/^\d{1,3}$/.test(requeues)) throw new CliError(`--max-requeues must be a whole number, got "${requeues}"`, 2)
  if (idle !== undefined && !/^\d{1,6}$/.test(idle)) throw new CliError(`--idle-shutdown must be a whole number of seconds, got "${idle}"`, 2)
  let script: string
  try {
    script = renderPilotScript({
      site: values.site!, partition: values.partition!, walltime: values.walltime!,
      nodes: positiveInt('nodes', values.nodes)!, cpus: positiveInt('cpus', values.cpus)!, memMb: positiveInt('mem', values.mem)!,
      drainSeconds: positiveInt('drain', values.drain) ?? 300,
      brokerUrl: values.broker!, caFile: values['ca-file']!, enrolmentFile: values['enrolment-file']!,
      logDir: values['log-dir']!, collector: values.collector!, trustDomain: values['trust-domain']!,
      allowedOwners: values['allowed-owners']!.split(','),
      ...(values.account !== undefined ? { account: values.account } : {}),
      ...(values.grace !== undefined ? { graceSeconds: positiveInt('grace', values.grace)! } : {}),
      ...(values['local-dir'] !== undefined ? { localBase: values['local-dir'] } : {}),
      ...(values.command !== undefined ? { command: values.command } : {}),
      ...(idle !== undefined ? { idleShutdownSeconds: Number(idle) } : {}),
      ...(requeues !== undefined ? { maxRequeues: Number(requeues) } : {}),
    })
  } catch (err) {
    if (err instanceof PilotScriptInputError) throw new CliError(err.message, 2)
    throw err
  }
  if (values.out === undefined) { io.out(script.replace(/\n$/, '')); return 0 }
  writeFileSync(values.out, script, { mode: 0o755 })
  io.err(`wrote ${values.out}`)
  return 0
}
