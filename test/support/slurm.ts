import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, closeSync, openSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { availableParallelism, freemem, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort, requireTool } from './peers.ts'

const execFileP = promisify(execFile)

/**
 * A throw-away SLURM cluster for one test file: its own munged (own key and socket), slurmctld and one slurmd per
 * node, all children of the test process, all state, logs and sockets in one temp dir, ports on 127.0.0.1.
 * Nothing global is touched (no /etc/slurm, /etc/munge, /run). Must run as root: slurmd launches jobs as the
 * submitting user, and munged must run as the `munge` user. docs/testing-slurm.md says why each setting is there.
 */
export interface TestSlurm {
  dir: string
  /** SLURM_CONF for every Slurm command, here and in jobs (sbatch exports the submitter's environment). */
  env: Record<string, string>
  nodes: string[]
  partition: string
  /** Runs a Slurm client command against this cluster; throws with its stderr on failure. */
  run(command: string, args: string[]): Promise<string>
  /** `sbatch --parsable`, returning the job id. */
  sbatch(script: string, args?: string[]): Promise<string>
  /** `scontrol show job -o` as key=value pairs (JobState, StartTime, EndTime, NodeList, ...). */
  job(id: string): Promise<Record<string, string>>
  /** Polls (bounded) until the job reaches one of `states`, returning its record. */
  waitJob(id: string, states: string[], ms: number): Promise<Record<string, string>>
  /** Daemon logs, for failure messages. */
  logs(): string
  stop(): Promise<void>
}

// Daemons by their Debian path (root's PATH may lack /usr/sbin), client commands through PATH.
const DAEMONS: [string, string][] = [['/usr/sbin/munged', 'munge'], ['/usr/sbin/slurmctld', 'slurmctld'], ['/usr/sbin/slurmd', 'slurmd']]
const CLIENTS: [string, string][] = [['sbatch', 'slurm-client'], ['sinfo', 'slurm-client'], ['scontrol', 'slurm-client']]

function daemon(path: string, args: string[], env: Record<string, string>, out: string, ids?: { uid: number; gid: number }): ChildProcess {
  // Output to a file, not a pipe: a daemon must never block on a pipe nobody drains.
  const fd = openSync(out, 'a')
  try {
    const child = spawn(path, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd], ...ids })
    child.on('error', () => { /* an exit code shows in the start-up wait */ })
    return child
  } finally {
    closeSync(fd)
  }
}

function userIds(name: string): { uid: number; gid: number } {
  return { uid: Number(execFileSync('id', ['-u', name]).toString().trim()), gid: Number(execFileSync('id', ['-g', name]).toString().trim()) }
}

async function until(cond: () => Promise<boolean> | boolean, ms: number, what: () => string): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function tail(file: string, n = 15): string {
  if (!existsSync(file)) return `(no ${file})`
  return `--- ${file}\n${readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n')}`
}

/** Exits (bounded); SIGKILL if SIGTERM was not enough. Only ever our own child, by its pid. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  const t = await Promise.race([exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('timeout'), 5000))])
  if (t === 'timeout') { child.kill('SIGKILL'); await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]) }
}

/**
 * Processes this cluster's slurmd forked for jobs (slurmstepd and what it runs) are not our children: they are
 * found by the cluster's SLURM_CONF in their environment, so only this cluster's are touched, and killed by pid.
 * slurmstepd ignores SIGTERM, hence SIGKILL.
 */
function killStrays(conf: string, ours: Set<number>): number {
  let n = 0
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (Number(pid) === process.pid || ours.has(Number(pid))) continue
    try {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
      if (!environ.includes(`SLURM_CONF=${conf}`)) continue
      process.kill(Number(pid), 'SIGKILL')
      n++
    } catch { /* gone, or not ours to read */ }
  }
  return n
}

/**
 * Starts the cluster: `nodes` slurmd daemons on one host (distinct `Port=` per NodeName, each `slurmd -N name`),
 * and waits (bounded) until every node is idle. Fails, naming the Debian package, when a peer is missing.
 */
export async function startSlurm(opts: { nodes?: number } = {}): Promise<TestSlurm> {
  for (const [path, pkg] of DAEMONS) {
    if (!existsSync(path)) throw new Error(`${path} not found: install the Debian package ${pkg} (apt-get install ${pkg}; slurm-wlm brings all of Slurm)`)
  }
  for (const [cmd, pkg] of CLIENTS) requireTool(cmd, pkg)
  if (process.getuid?.() !== 0) throw new Error('the SLURM interop tests start slurmd, which runs jobs as their submitter: run them as root')
  const nodeCount = opts.nodes ?? 2
  const nodes = Array.from({ length: nodeCount }, (_, i) => `ctbn${i + 1}`)
  const partition = 'ctb'
  const dir = mkdtempSync(join(tmpdir(), 'ctb-slurm-'))
  // munged refuses a socket directory others cannot traverse; mkdtemp makes 0700.
  chmodSync(dir, 0o755)
  const munge = join(dir, 'munge')
  mkdirSync(munge, { mode: 0o755 })
  mkdirSync(join(dir, 'state'), { mode: 0o700 })
  mkdirSync(join(dir, 'spool'), { mode: 0o755 })
  const mungeIds = userIds('munge')
  chownSync(munge, mungeIds.uid, mungeIds.gid)
  const key = join(munge, 'munge.key')
  // munged insists on a key owned by munge, mode 0400.
  writeFileSync(key, randomBytes(1024), { mode: 0o400 })
  chownSync(key, mungeIds.uid, mungeIds.gid)
  const socket = join(munge, 'socket')

  const ctldPort = await freePort()
  const nodePorts: number[] = []
  for (const _ of nodes) nodePorts.push(await freePort())
  const cpus = availableParallelism()
  const memMb = Math.max(200, Math.min(1000, Math.floor(freemem() / 1024 / 1024 / (2 * nodeCount))))
  const conf = join(dir, 'slurm.conf')
  writeFileSync(conf, [
    'ClusterName=ctbtest',
    // An explicit address: binding to what the host name resolves to breaks srun with Debian's 127.0.1.1 line.
    'SlurmctldHost=localhost(127.0.0.1)',
    'AuthType=auth/munge',
    'CredType=cred/munge',
    `AuthInfo=socket=${socket}`,
    'SlurmUser=root',
    `SlurmctldPort=${ctldPort}`,
    `StateSaveLocation=${join(dir, 'state')}`,
    `SlurmdSpoolDir=${join(dir, 'spool', '%n')}`,
    `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
    `SlurmdPidFile=${join(dir, 'slurmd-%n.pid')}`,
    `SlurmctldLogFile=${join(dir, 'slurmctld.log')}`,
    `SlurmdLogFile=${join(dir, 'slurmd-%n.log')}`,
    // No cgroups in a container: processes are tracked by parent pid, tasks are not bound.
    'ProctrackType=proctrack/linuxproc',
    'TaskPlugin=task/none',
    'JobAcctGatherType=jobacct_gather/none',
    'AccountingStorageType=accounting_storage/none',
    // With no accounting, this file is where a finished job's final state (COMPLETED, TIMEOUT...) stays.
    'JobCompType=jobcomp/filetxt',
    `JobCompLoc=${join(dir, 'jobcomp.txt')}`,
    'MpiDefault=none',
    'SchedulerType=sched/backfill',
    'SchedulerParameters=batch_sched_delay=0',
    'SelectType=select/cons_tres',
    'SelectTypeParameters=CR_Core',
    'ReturnToService=2',
    'MinJobAge=600',
    'KillWait=5',
    ...nodes.map((n, i) => `NodeName=${n} NodeHostname=localhost NodeAddr=127.0.0.1 Port=${nodePorts[i]} CPUs=${cpus} RealMemory=${memMb} State=UNKNOWN`),
    `PartitionName=${partition} Nodes=${nodes.join(',')} Default=YES MaxTime=INFINITE State=UP`,
    '',
  ].join('\n'))
  const env = { SLURM_CONF: conf }

  const children: ChildProcess[] = []
  let stopped = false
  const logs = () => [tail(join(munge, 'munged.log')), tail(join(dir, 'slurmctld.log')), ...nodes.map((n) => tail(join(dir, `slurmd-${n}.log`)))].join('\n')
  const run = async (command: string, args: string[]) => {
    try {
      const r = await execFileP(command, args, { env: { ...process.env, ...env }, timeout: 30_000 })
      return r.stdout
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error(`${command} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`)
    }
  }
  const job = async (id: string) => {
    const line = (await run('scontrol', ['show', 'job', '-o', id])).trim()
    return Object.fromEntries(line.split(/\s+/).map((kv) => { const i = kv.indexOf('='); return [kv.slice(0, i), kv.slice(i + 1)] }))
  }
  const stop = async () => {
    if (stopped) return
    stopped = true
    // Jobs first, so no job process outlives its slurmd; then the daemons, last the one they all talk to.
    try { await run('scancel', ['--full', '-p', partition]) } catch { /* controller may already be gone */ }
    await until(async () => { try { return (await run('squeue', ['-h', '-p', partition])).trim() === '' } catch { return true } }, 10_000, () => 'jobs did not end').catch(() => {})
    for (const c of children.slice(2).reverse()) await stopChild(c)
    killStrays(conf, new Set(children.map((c) => c.pid!)))
    for (const c of children.slice(0, 2).reverse()) await stopChild(c)
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    children.push(daemon('/usr/sbin/munged', ['--foreground', '--key-file', key, '--socket', socket, '--pid-file', join(munge, 'munged.pid'),
      '--log-file', join(munge, 'munged.log'), '--seed-file', join(munge, 'seed')], {}, join(munge, 'munged.out'), mungeIds))
    await until(() => existsSync(socket), 10_000, () => `munged did not create its socket\n${logs()}`)
    children.push(daemon('/usr/sbin/slurmctld', ['-D'], env, join(dir, 'slurmctld.out')))
    for (const n of nodes) children.push(daemon('/usr/sbin/slurmd', ['-D', '-N', n], env, join(dir, `slurmd-${n}.out`)))
    await until(async () => {
      for (const c of children) if (c.exitCode !== null) throw new Error(`${c.spawnfile} exited with ${c.exitCode}\n${logs()}`)
      try {
        const states = (await run('sinfo', ['-h', '-N', '-o', '%N %t'])).trim().split('\n')
        return states.length === nodes.length && states.every((s) => s.endsWith(' idle'))
      } catch { return false }
    }, 30_000, () => `the SLURM nodes did not become idle\n${logs()}`)
  } catch (err) {
    await stop()
    throw err
  }

  return {
    dir, env, nodes, partition, run, job, logs, stop,
    sbatch: async (script, args = []) => (await run('sbatch', ['--parsable', ...args, script])).trim().split(';')[0]!,
    waitJob: async (id, states, ms) => {
      let last: Record<string, string> = {}
      await until(async () => { last = await job(id); return states.includes(last.JobState!) }, ms,
        () => `job ${id} did not reach ${states.join('/')} in ${ms} ms (last ${last.JobState})\n${logs()}`)
      return last
    },
  }
}
