import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { renderPilotScript, type PilotScriptOptions } from '../../src/clients/pilot/render.ts'
import { fakeIdToken, fakeMaster, fakeSrun, idTokenReply, nodeStubs, runPilot, startFakeBroker, until, type Reply, type SeenRequest } from '../support/pilot_harness.ts'
import { tempDir } from '../support/tmp.ts'

// The rendered pilot, run under bash against a fake broker that speaks the pilot wire contract over TLS on
// loopback, with squeue and (for schedules) the clock stubbed at the bash level. Nothing here needs SLURM.
const TRUST = 'pool.example.org'
const JOB = '4242'
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const IDTOKEN = 'urn:htcondor:token-type:idtoken'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

interface Setup {
  reply: (req: SeenRequest, index: number) => Reply
  fakeClockStart?: number
  /** Job end, seconds after the (fake or real) start. */
  endIn?: number
  render?: Partial<PilotScriptOptions>
  env?: Record<string, string>
  brokerUrl?: string
  /** Nodes of the job; above 1 the batch shell fans out through a stand-in srun (wn01, wn02, ...). */
  nodes?: number
}

async function setup(s: Setup) {
  const dir = tempDir('ctb-pilot-')
  const start = s.fakeClockStart ?? Math.floor(Date.now() / 1000)
  const stubs = nodeStubs(dir, { jobId: JOB, end: start + (s.endIn ?? 3600), ...(s.fakeClockStart !== undefined ? { fakeClockStart: s.fakeClockStart } : {}) })
  const broker = await startFakeBroker(dir, s.reply, s.fakeClockStart !== undefined ? stubs.clockFile : undefined)
  cleanups.push(() => broker.close())
  const staged = join(dir, 'enrolment.cred')
  writeFileSync(staged, 'enrol+ment/cred=1\n', { mode: 0o600 })
  const script = join(dir, 'pilot.sbatch')
  const nodes = s.nodes ?? 1
  if (nodes > 1) fakeSrun(dir, nodes)
  writeFileSync(script, renderPilotScript({
    site: 'SITE-A', partition: 'batch', walltime: '120', nodes, cpus: 8, memMb: 16000, drainSeconds: 300, graceSeconds: 2,
    brokerUrl: s.brokerUrl ?? broker.url, caFile: broker.caFile, enrolmentFile: staged, logDir: dir, collector: 'cm.example.org',
    trustDomain: TRUST, allowedOwners: ['alice', 'bob'], localBase: join(dir, 'node'), command: fakeMaster(dir), ...s.render,
  }))
  const masterLog = join(dir, 'master.log')
  const run = () => {
    const r = runPilot(script, { ...stubs.env, SLURM_JOB_ID: JOB, SLURMD_NODENAME: 'wn01', FAKE_STAGED: staged, ...s.env })
    cleanups.push(() => {
      r.child.kill('SIGKILL')
      // The pilot command runs in its own session; a failed test must not leave it behind.
      for (const f of readdirSync(dir).filter((n) => /^master(-wn\d+)?\.log$/.test(n))) {
        for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/^pid (\d+)$/gm)) { try { process.kill(-Number(m[1]), 'SIGKILL') } catch { /* gone */ } }
      }
    })
    return r
  }
  const log = () => (existsSync(masterLog) ? readFileSync(masterLog, 'utf8') : '')
  const nodeLog = (node: string) => { const f = join(dir, `master-${node}.log`); return existsSync(f) ? readFileSync(f, 'utf8') : '' }
  return { nodeLog, localOf: (node: string) => join(dir, 'node', `htc-pilot-${JOB}-${node}`), dir, start, staged, script, broker, stubs, run, log, stop: () => writeFileSync(join(dir, 'stop'), ''), local: join(dir, 'node', `htc-pilot-${JOB}-wn01`) }
}

describe('pilot script: start-up', () => {
  it('redeems the staged credential once, places the token 0600 in a 0700 dir, then starts the command; the staged file goes when the job ends', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600) })
    const p = t.run()
    await until(() => t.log().includes('token '))
    const redeem = t.broker.seen[0]!.params
    expect(redeem).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: 'enrol+ment/cred=1',
      subject_token_type: ENROLMENT,
      slurm_job_id: JOB,
      node: 'wn01',
      job_end: String(t.start + 3600),
      // SLURM_RESTART_COUNT is unset on a job's first run.
      slurm_restart_count: '0',
    })
    const line = t.log().split('\n').find((l) => l.startsWith('token '))!
    const [, mode, , , dirMode, , staged, , dots, , , token] = line.split(' ')
    // Staged while the job runs: a requeued run of it would redeem again (--max-requeues defaults to 2).
    expect({ mode, dirMode, staged, dots, token }).toEqual({ mode: '600', dirMode: '700', staged: 'present', dots: '0', token: fakeIdToken(TRUST, 0) })
    expect(t.log()).toContain(`config ${t.local}/condor_config`)
    t.stop()
    expect(await p.exit).toBe(0)
    expect(t.broker.seen).toHaveLength(1)
    expect(existsSync(t.local)).toBe(false)
    expect(existsSync(t.staged)).toBe(false)
  })

  // curl reads $HOME/.curlrc (or $CURL_HOME's, $XDG_CONFIG_HOME's) unless told not to, and the job's environment
  // is the submitting account's: a .curlrc kept there for other work would reach the credential's request.
  it('ignores a .curlrc in $HOME: it neither traces the credential to a file nor turns off TLS checks', async () => {
    const home = tempDir('ctb-pilot-home-')
    const trace = join(home, 'trace')
    writeFileSync(join(home, '.curlrc'), `trace-ascii = "${trace}"\ninsecure\n`)
    const t = await setup({
      reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600),
      // A CA that did not sign the broker's certificate: only --insecure from .curlrc would let the request through.
      render: { caFile: '/etc/ssl/certs/ca-certificates.crt' },
      env: { HOME: home, CURL_HOME: home, XDG_CONFIG_HOME: home, SSLKEYLOGFILE: join(home, 'keys') },
    })
    const p = t.run()
    await until(() => t.broker.seen.length > 0 || p.stderr().includes('broker unreachable'))
    p.child.kill('SIGTERM')
    await p.exit
    expect(t.broker.seen).toEqual([])
    expect(existsSync(trace)).toBe(false)
    expect(existsSync(join(home, 'keys'))).toBe(false)
  })

  it('with --max-requeues 0 deletes the staged file before the command starts and asks SLURM not to requeue', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), render: { maxRequeues: 0 } })
    expect(readFileSync(t.script, 'utf8')).toContain('\n#SBATCH --no-requeue\n')
    const p = t.run()
    await until(() => t.log().includes('token '))
    expect(t.log().split('\n').find((l) => l.startsWith('token '))!.split(' ')[6]).toBe('gone')
    p.child.kill('SIGTERM')
    await p.exit
    expect(existsSync(t.staged)).toBe(false)
  })

  it('passes SLURM_RESTART_COUNT on as slurm_restart_count', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { SLURM_RESTART_COUNT: '1' } })
    const p = t.run()
    await until(() => t.log().includes('token '))
    expect(t.broker.seen[0]!.params.slurm_restart_count).toBe('1')
    t.stop()
    expect(await p.exit).toBe(0)
  })
})

describe('pilot script: the HTCondor configuration it writes', () => {
  it('matches the reviewed golden file (remaining time from the fake clock, cpus and memory from SLURM)', async () => {
    const start = 1_800_000_000
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), fakeClockStart: start, endIn: 7200,
      env: { SLURM_CPUS_ON_NODE: '6', SLURM_MEM_PER_NODE: '12000' } })
    const p = t.run()
    await until(() => t.log().includes('token '))
    const seen = readFileSync(join(t.dir, 'condor_config.seen'), 'utf8').replaceAll(t.local, '@LOCAL_DIR@')
    t.stop()
    expect(await p.exit).toBe(0)
    const golden = fileURLToPath(new URL('../fixtures/pilot/condor_config.golden', import.meta.url))
    if (process.env.CTB_UPDATE_GOLDEN === '1') writeFileSync(golden, seen)
    expect(seen).toBe(readFileSync(golden, 'utf8'))
  })
})

describe('pilot script: the master\'s own shutdown timer', () => {
  // docs/pilots-script.md: the master stops itself at the job's end minus the drain, counted from its own start
  // (DaemonStartTime). The seconds were counted from the pilot's start, before the redemption, so every second
  // spent retrying an unavailable broker put the master's shutdown that much later, past the drain and up to past
  // the walltime, where SLURM kills the job's work instead of letting it drain.
  it('counts the seconds left from the master\'s start, not from before a redemption the broker made wait', async () => {
    const start = 1_800_000_000
    const t = await setup({
      reply: (_, i) => (i < 3 ? { status: 503, body: { error: 'temporarily_unavailable' }, headers: { 'retry-after': '120' } } : idTokenReply(fakeIdToken(TRUST, i), 3600)),
      fakeClockStart: start, endIn: 7200,
    })
    const p = t.run()
    await until(() => t.log().includes('token '))
    const redeemedAt = t.broker.seen[3]!.at
    expect(redeemedAt - start).toBeGreaterThanOrEqual(360)
    const knob = /^MASTER\.DAEMON_SHUTDOWN_FAST = \(CurrentTime - DaemonStartTime\) > (\d+)$/m.exec(readFileSync(join(t.dir, 'condor_config.seen'), 'utf8'))
    // The master starts after the redemption answered (same fake second: nothing in between sleeps).
    expect(Number(knob?.[1])).toBe(start + 7200 - 300 - redeemedAt)
    t.stop()
    expect(await p.exit).toBe(0)
  })
})

describe('pilot script: refusals at start-up', () => {
  it('stops on a 400 without retrying, never starts the command and still deletes the staged credential', async () => {
    const t = await setup({ reply: () => ({ status: 400, body: { error: 'invalid_grant', error_description: 'used up' } }) })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(t.broker.seen).toHaveLength(1)
    expect(t.log()).toBe('')
    expect(existsSync(t.staged)).toBe(false)
    expect(p.stderr()).toContain('HTTP 400 (invalid_grant)')
  })

  // $TMPDIR comes from the job's environment and was written as it is into LOCAL_DIR in the HTCondor
  // configuration: a newline there adds knobs of its own, `$(…)` is expanded by HTCondor, a relative path
  // lands wherever the job started.
  it.each([
    ['a newline and a knob', 'x\nSTART = True'],
    ['an HTCondor macro', 'x$(FULL_HOSTNAME)'],
    ['a space', 'x y'],
  ])('refuses a $TMPDIR with %s before asking the broker anything', async (_, tail) => {
    const hostile = `${tmpdir()}/ctb-hostile-tmpdir-${process.pid}-${tail}`
    cleanups.push(() => rmSync(hostile, { recursive: true, force: true }))
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), render: { localBase: '' }, env: { TMPDIR: hostile } })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(t.broker.seen).toHaveLength(0)
    expect(t.log()).toBe('')
    expect(existsSync(hostile)).toBe(false)
    expect(p.stderr()).toContain('error: the node-local directory')
  })

  // The node-local directory has a name anyone on the node can predict (job id and node name): on a shared /tmp
  // another user can put a symlink there first, and the pilot would chmod, fill and use whatever it points at.
  it('refuses a node-local directory that is already a symlink, leaving its target alone', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600) })
    const elsewhere = join(t.dir, 'elsewhere')
    mkdirSync(elsewhere, { mode: 0o755 })
    chmodSync(elsewhere, 0o755)
    mkdirSync(join(t.dir, 'node'))
    symlinkSync(elsewhere, t.local)
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(t.broker.seen).toHaveLength(0)
    expect(readdirSync(elsewhere)).toEqual([])
    expect(statSync(elsewhere).mode & 0o777).toBe(0o755)
    expect(p.stderr()).toContain(`error: ${t.local} exists and is not a directory of this user's own`)
  })

  // The staged credential sits on shared storage for the job's whole queue time. Readable by group or other, it may
  // already be in other hands (anyone holding it can redeem it into startd tokens of the site): HTCondor refuses a
  // token file others can read, and provisioning says to stage it 0600, the submitting user's own.
  it.each([['0640', 0o640], ['0604', 0o604]])('refuses a staged credential of mode %s, asks the broker nothing and deletes it', async (_, mode) => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600) })
    chmodSync(t.staged, mode)
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(t.broker.seen).toHaveLength(0)
    expect(t.log()).toBe('')
    expect(p.stderr()).toContain(`error: the enrolment credential ${t.staged} is accessible to group or other`)
    expect(existsSync(t.staged)).toBe(false)
  })

  // A staged file that is not the user's own is not the user's credential to judge or delete: another user's file at
  // that path (a shared project directory), or the user's own seen through a shared filesystem that maps owners
  // (NFSv4 idmapping to nobody, all_squash). The pilot refused it as "accessible to group or other (mode 600) or not
  // this user's own", told the user to revoke it, and deleted it, wherever the directory let it.
  it('refuses a staged credential that is not the user\'s own, says whose it is, and leaves it in place', async () => {
    // CI runs as root (test/support/system_ca.ts): root can give the file away, and the pilot runs as root.
    expect(process.getuid?.()).toBe(0)
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600) })
    chownSync(t.staged, 65534, 65534)
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(t.broker.seen).toHaveLength(0)
    expect(t.log()).toBe('')
    expect(p.stderr()).toContain(`error: the enrolment credential ${t.staged} is owned by uid 65534, not by this user (uid 0)`)
    expect(p.stderr()).not.toContain('accessible to group or other')
    expect(existsSync(t.staged)).toBe(true)
  })

  it('refuses a relative $TMPDIR', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), render: { localBase: '' }, env: { TMPDIR: 'scratch' } })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(t.broker.seen).toHaveLength(0)
    expect(p.stderr()).toContain('error: the node-local directory')
  })

  it('stops reading an answer above 1 MiB instead of storing it on the node', async () => {
    const t = await setup({ reply: (_, i) => (i === 0 ? { status: 200, body: ' '.repeat(2 * 1024 * 1024), headers: { 'content-length': String(2 * 1024 * 1024) } } : { status: 400, body: { error: 'invalid_grant' } }), fakeClockStart: 1_800_000_000 })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(p.stderr()).toMatch(/broker unreachable: curl: \(63\)/)
    expect(p.stderr()).not.toContain('without a usable IDTOKEN')
  })

  // curl before 8.4 (EL8's 7.61, EL9's 7.76, Debian 12's 7.88) applies --max-filesize only to an answer that
  // states its length up front; a chunked one it stores whole, as fast as it streams, for its 30 s --max-time.
  it('stops storing an answer above 1 MiB that does not state its length (chunked), whatever the curl version', async () => {
    const t = await setup({ reply: (_, i) => (i === 0 ? { status: 200, body: ' '.repeat(2 * 1024 * 1024), headers: { 'transfer-encoding': 'chunked' } } : { status: 400, body: { error: 'invalid_grant' } }), fakeClockStart: 1_800_000_000 })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(p.stderr()).toMatch(/broker unreachable: curl: \(\d+\)/)
    expect(p.stderr()).not.toContain('without a usable IDTOKEN')
  })

  it('logs a refusal\'s error code without the control characters a broker (or whatever answers) put in it', async () => {
    const t = await setup({ reply: () => ({ status: 400, body: '{"error":"invalid_grant\u001b[2J\u001b]0;owned\u0007"}' }) })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(p.stderr()).toContain('HTTP 400 (invalid_grant?[2J?]0;owned?)')
    expect(p.stderr()).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/)
  })

  it('logs a refusal\'s error code without C1 or bidi controls when the node runs a UTF-8 locale', async () => {
    // In C.UTF-8, U+202E (right-to-left override) and U+2066 count as [:print:]: they would reorder the job log's line.
    const t = await setup({ reply: () => ({ status: 400, body: '{"error":"invalid_grant\u202egol\u2066\u009b2J"}' }), env: { LC_ALL: 'C.UTF-8' } })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(p.stderr()).toContain('HTTP 400 (invalid_grant')
    expect(p.stderr()).not.toMatch(/[\u0080-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/)
  })

  it('refuses an IDTOKEN whose iss is not the trust domain (HTCondor would skip it silently)', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken('other.example.org', i), 3600) })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(t.log()).toBe('')
    expect(p.stderr()).toContain('is not the trust domain')
  })

  it('backs off with jitter while the broker refuses connections, then gives up at the job end minus the drain', async () => {
    // A port nothing listens on: connection refused at every attempt. stop = start + 100 (end 400, drain 300).
    const t = await setup({ reply: () => ({ status: 500 }), fakeClockStart: 1_800_000_000, endIn: 400 })
    await t.broker.close()
    const p = t.run()
    expect(await p.exit).toBe(1)
    const delays = readFileSync(t.stubs.sleepsFile, 'utf8').trim().split('\n').map(Number)
    // 5·2^(n-1) s plus up to half again, the last one cut to land exactly on the deadline.
    expect(delays[0]).toBeGreaterThanOrEqual(5); expect(delays[0]).toBeLessThanOrEqual(7)
    expect(delays[1]).toBeGreaterThanOrEqual(10); expect(delays[1]).toBeLessThanOrEqual(15)
    expect(delays[2]).toBeGreaterThanOrEqual(20); expect(delays[2]).toBeLessThanOrEqual(30)
    expect(delays.reduce((a, b) => a + b, 0)).toBe(100)
    expect(p.stderr()).toContain('broker unreachable')
    expect(t.log()).toBe('')
  })

  it('reads a pretty-printed 200 with members in any order, and treats a fractional expires_in as unusable', async () => {
    const pretty = (tok: string, exp: string) => ({ status: 200, body: `{\n  "scope" : "condor:/READ",\n  "expires_in" : ${exp},\n  "token_type":"N_A",\n  "access_token" :\r\n "${tok}",\n  "issued_token_type": "${IDTOKEN}"\n}\n` })
    const t = await setup({ reply: (_, i) => (i === 0 ? pretty(fakeIdToken(TRUST, 0), '36.5') : pretty(fakeIdToken(TRUST, i), '3600')), fakeClockStart: 1_800_000_000 })
    const p = t.run()
    await until(() => t.log().includes('token '))
    expect(t.log()).toContain(fakeIdToken(TRUST, 1))
    expect(p.stderr()).toContain('without a usable IDTOKEN')
    t.stop()
    expect(await p.exit).toBe(0)
  })
})

describe('pilot script: signals and exit status', () => {
  it('stopped by SIGTERM while it waits to retry the redemption, leaves no sleep of its own behind', async () => {
    const t = await setup({ reply: () => ({ status: 503 }) })
    const p = t.run()
    await until(() => p.stderr().includes('retrying in'))
    /** The pids of `sleep` processes whose parent is `pid`. */
    const sleepsOf = (pid: number) => readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try {
        const [, rest] = readFileSync(`/proc/${d}/stat`, 'utf8').split(/ \((?=sleep\) )/)
        return rest !== undefined && Number(rest.split(' ')[2]) === pid
      } catch { return false }
    }).map(Number)
    // The log line comes just before the sleep starts.
    await until(() => sleepsOf(p.child.pid!).length === 1)
    const sleeps = sleepsOf(p.child.pid!)
    p.child.kill('SIGTERM')
    expect(await p.exit).toBe(143)
    await new Promise((r) => setTimeout(r, 200))
    expect(sleeps.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([])
  })

  it.each(['SIGTERM', 'SIGUSR1'] as const)('on %s asks the command to stop gracefully and exits with its status', async (sig) => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { FAKE_TERM_EXIT: '3' } })
    const p = t.run()
    await until(() => t.log().includes('token '))
    const t0 = Date.now()
    p.child.kill(sig)
    expect(await p.exit).toBe(3)
    expect(Date.now() - t0).toBeLessThan(1500)
    expect(t.log()).toMatch(/^TERM$/m)
    expect(p.stderr()).toContain(`received ${sig}`)
    expect(existsSync(t.local)).toBe(false)
    // SIGTERM is how SLURM stops a job it requeues (scontrol requeue, preemption): the next run needs the
    // credential. SIGUSR1 is the drain before the walltime, after which SLURM never requeues.
    expect(existsSync(t.staged)).toBe(sig === 'SIGTERM')
  })

  it('escalates to SIGKILL after the grace period when the command ignores SIGTERM', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { FAKE_IGNORE_TERM: '1' } })
    const p = t.run()
    await until(() => t.log().includes('token '))
    const t0 = Date.now()
    p.child.kill('SIGUSR1')
    expect(await p.exit).toBe(128 + 9)
    const took = Date.now() - t0
    expect(took).toBeGreaterThanOrEqual(1900)
    expect(took).toBeLessThan(6000)
    expect(t.log()).toMatch(/^TERM-ignored$/m)
    expect(p.stderr()).toContain('SIGKILL')
  })

  // SLURM's scancel --signal=TERM reaches the task and the command's whole process group at the same moment; a
  // command that exits at once must not have its status lost while the task's bash is inside its own trap.
  it.each([1, 2, 3, 4, 5, 6])('exits 0 when the command exits 0 at once on a SIGTERM sent to it and the task together (run %i)', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { FAKE_TERM_EXIT: '0' } })
    const p = t.run()
    await until(() => t.log().includes('token '))
    const pid = Number(/^pid (\d+)$/m.exec(t.log())?.[1])
    // Field 5 of /proc/PID/stat (after the parenthesised name) is the process group.
    const pgid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2])
    const t0 = Date.now()
    process.kill(-pgid, 'SIGTERM')
    p.child.kill('SIGTERM')
    expect(await p.exit).toBe(0)
    expect(Date.now() - t0).toBeLessThan(1900)
    expect(t.log()).toMatch(/^TERM$/m)
    expect(p.stderr()).toContain('the pilot command exited with status 0')
    expect(p.stderr()).not.toContain('did not stop within')
  })

  it('passes the command\'s own exit status through when it ends by itself', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { FAKE_EXIT: '5' } })
    const p = t.run()
    await until(() => t.log().includes('token '))
    t.stop()
    expect(await p.exit).toBe(5)
  })
})

// docs/pilots-script.md, "Requeued and preempted jobs": the staged credential stays only after a run that SIGTERM
// ended (how SLURM stops a job it requeues); the drain's SIGUSR1 decides even when SLURM's SIGTERM follows it.
describe('pilot script: the staged credential and the signal that ended the run', () => {
  it('deletes it when the drain (SIGUSR1) came first and SLURM\'s SIGTERM at the walltime follows', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { FAKE_IGNORE_TERM: '1' } })
    const p = t.run()
    await until(() => t.log().includes('token '))
    p.child.kill('SIGUSR1')
    await until(() => t.log().includes('TERM-ignored'))
    p.child.kill('SIGTERM')
    expect(await p.exit).toBe(128 + 9)
    expect(existsSync(t.staged)).toBe(false)
  })

  it.each(['SIGTERM', 'SIGUSR1'] as const)('on %s while the redemption is still being retried, keeps it only for SIGTERM', async (sig) => {
    const t = await setup({ reply: () => 'drop' })
    const p = t.run()
    await until(() => p.stderr().includes('retrying in'))
    p.child.kill(sig)
    expect(await p.exit).toBe(143)
    expect(p.stderr()).toContain(`received ${sig} before the pilot started`)
    expect(t.log()).toBe('')
    expect(existsSync(t.staged)).toBe(sig === 'SIGTERM')
  })

  it('runs on and exits with the command\'s status when the staged file cannot be deleted (read-only shared storage)', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), render: { maxRequeues: 0 } })
    // An rm that fails on the staged file as a read-only mount would, and works elsewhere.
    writeFileSync(join(t.dir, 'rm'), `#!/bin/bash\nfor a; do [[ $a == '${t.staged}' ]] && { echo "rm: cannot remove '$a': Read-only file system" >&2; exit 1; }; done\nexec /bin/rm "$@"\n`, { mode: 0o755 })
    const p = t.run()
    await until(() => t.log().includes('token '))
    expect(t.log().split('\n').find((l) => l.startsWith('token '))!.split(' ')[6]).toBe('present')
    t.stop()
    expect(await p.exit).toBe(0)
    expect(p.stderr()).toContain(`rm: cannot remove '${t.staged}': Read-only file system`)
    expect(p.stderr()).toContain('the pilot command exited with status 0')
    expect(existsSync(t.local)).toBe(false)
  })
})

describe('pilot script: renewal schedule (fake clock)', () => {
  const START = 1_800_000_000

  it('renews at about half the token life with the current token, replaces it by rename, and stops at end minus drain', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 600), fakeClockStart: START })
    const p = t.run()
    await until(() => p.stderr().includes('renewal done'))
    const seen = t.broker.seen
    const renewals = seen.slice(1)
    // 3300 s to cover in steps of 240-300 s: at least ten renewals.
    expect(renewals.length).toBeGreaterThanOrEqual(10)
    renewals.forEach((r, i) => {
      // Each renewal presents the token issued just before it; the enrolment credential is never replayed.
      expect(r.params).toEqual({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: fakeIdToken(TRUST, i), subject_token_type: IDTOKEN })
      const gap = r.at - seen[i]!.at
      expect(gap).toBeGreaterThanOrEqual(240)
      expect(gap).toBeLessThanOrEqual(300)
    })
    const stopAt = START + 3600 - 300
    expect(renewals.at(-1)!.at).toBeLessThan(stopAt)
    expect(renewals.at(-1)!.at + 300).toBeGreaterThanOrEqual(stopAt - 60)
    await until(() => t.log().includes(fakeIdToken(TRUST, renewals.length)))
    // Renewal is over: only the live token is left, no temporary dot-file.
    expect(readdirSync(join(t.local, 'tokens.d'))).toEqual(['pilot'])
    t.stop()
    expect(await p.exit).toBe(0)
    // Every version the command saw was a whole token in a 0600 file in a 0700 directory; each replacement
    // is a new file renamed over the old one (a reader holding the old one still reads it).
    const versions = t.log().split('\n').filter((l) => l.startsWith('token ')).map((l) => l.split(' '))
    expect(versions.length).toBeGreaterThanOrEqual(2)
    for (const v of versions) expect([v[1], v[4]]).toEqual(['600', '700'])
    expect(versions.map((v) => v[10])).toEqual(['none', ...versions.slice(1).map(() => 'yes')])
    for (let i = 1; i < versions.length; i++) expect(versions[i]![2]).not.toBe(versions[i - 1]![2])
  })

  it('retries a failed renewal with backoff (503 Retry-After, dropped connection, 502) and renews before expiry', async () => {
    const replies: Reply[] = [
      idTokenReply(fakeIdToken(TRUST, 0), 100),
      { status: 503, body: { error: 'temporarily_unavailable' }, headers: { 'retry-after': '9' } },
      'drop',
      { status: 502, body: 'bad gateway' },
      idTokenReply(fakeIdToken(TRUST, 4), 3600),
    ]
    const t = await setup({ reply: (_, i) => replies[i] ?? { status: 500 }, fakeClockStart: START })
    const p = t.run()
    await until(() => t.log().includes(fakeIdToken(TRUST, 4)))
    // The renewed token lives 3600 s, so under load its own renewal (fake time ~1800 s) may already be in.
    expect(t.broker.seen.length).toBeGreaterThanOrEqual(5)
    const at = t.broker.seen.slice(0, 5).map((r) => r.at - t.broker.seen[0]!.at)
    const gaps = at.slice(2).map((a, i) => a - at[i + 1]!)
    // Retry-After (9 s) wins over the first backoff step (5-7 s); then 10-15 s; the third step (20-30 s) is cut
    // to the deadline, expiry (100 s) minus a tenth of the life.
    expect(gaps[0]).toBe(9)
    expect(gaps[1]).toBeGreaterThanOrEqual(10); expect(gaps[1]).toBeLessThanOrEqual(15)
    expect(gaps[2]).toBeGreaterThanOrEqual(Math.min(20, 90 - at[3]!)); expect(at[4]).toBeLessThanOrEqual(90)
    for (const r of t.broker.seen.slice(1)) expect(r.params.subject_token_type).toBe(IDTOKEN)
    t.stop()
    expect(await p.exit).toBe(0)
  })

  // RFC 9110 §10.2.3: a Retry-After may be an HTTP-date (a proxy in front of the broker sends one), in any of
  // §5.6.7's three forms; the wait is from the pilot's own clock to that date, and the longer of it and the backoff.
  it('waits until a 503\'s Retry-After HTTP-date, in each of its three forms', async () => {
    const d = (s: number) => new Date(s * 1000)
    const imf = (s: number) => d(s).toUTCString()
    const days = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
    const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
    const hms = (s: number) => d(s).toISOString().slice(11, 19)
    const rfc850 = (s: number) => `${days[d(s).getUTCDay()]}, ${String(d(s).getUTCDate()).padStart(2, '0')}-${months[d(s).getUTCMonth()]}-${String(d(s).getUTCFullYear() % 100).padStart(2, '0')} ${hms(s)} GMT`
    const asctime = (s: number) => `${days[d(s).getUTCDay()]!.slice(0, 3)} ${months[d(s).getUTCMonth()]} ${String(d(s).getUTCDate()).padStart(2, ' ')} ${hms(s)} ${d(s).getUTCFullYear()}`
    const unavailable = (retryAfter: string): Reply => ({ status: 503, body: { error: 'temporarily_unavailable' }, headers: { 'retry-after': retryAfter } })
    const t = await setup({
      reply: (req, i) => [
        idTokenReply(fakeIdToken(TRUST, 0), 1000),
        unavailable(imf(req.at + 40)),
        unavailable(asctime(req.at + 50)),
        unavailable(rfc850(req.at + 60)),
      ][i] ?? idTokenReply(fakeIdToken(TRUST, i), 3600),
      fakeClockStart: START,
    })
    const p = t.run()
    await until(() => t.log().includes(fakeIdToken(TRUST, 4)))
    const at = t.broker.seen.slice(0, 5).map((r) => r.at)
    // Each date is later than the backoff step it meets (5-7, 10-15, 20-30 s), so it decides the wait.
    expect([at[2]! - at[1]!, at[3]! - at[2]!, at[4]! - at[3]!]).toEqual([40, 50, 60])
    t.stop()
    expect(await p.exit).toBe(0)
  })

  it('keeps retrying until just before expiry, never after, and does not replay the enrolment credential', async () => {
    const t = await setup({ reply: (_, i) => (i === 0 ? idTokenReply(fakeIdToken(TRUST, 0), 200) : { status: 503, body: { error: 'temporarily_unavailable' } }), fakeClockStart: START })
    const p = t.run()
    await until(() => p.stderr().includes('renewal stopped'))
    const at = t.broker.seen.map((r) => r.at - t.broker.seen[0]!.at)
    // Expiry at 200 s, safety margin life/10 = 20 s: the last attempt is exactly at 180 s.
    expect(at.at(-1)).toBe(180)
    expect(t.broker.seen.slice(1).every((r) => r.params.subject_token_type === IDTOKEN)).toBe(true)
    expect(p.stderr()).toContain('no renewal succeeded before the deadline')
    t.stop()
    expect(await p.exit).toBe(0)
  })

  // The broker caps every token at the job end it recorded, which can come before the pilot's own (a grant with
  // up_to trims a later job_end to its lifetime.max). Renewing at half life towards that cap gave tokens of 200,
  // 100, 50 ... 1 s, each one minted and audited, the last ones back to back with no wait at all.
  it('stops renewing once a renewal no longer moves the expiry later (the broker\'s end for the pilot is reached)', async () => {
    const brokerEnd = START + 1000
    const t = await setup({
      reply: (req, i) => {
        if (brokerEnd - req.at <= 0) return { status: 400, body: { error: 'invalid_grant' } }
        const life = Math.min(600, brokerEnd - req.at)
        return idTokenReply(fakeIdToken(TRUST, i, req.at + life), life)
      },
      fakeClockStart: START,
    })
    const p = t.run()
    await until(() => p.stderr().includes('renewal done') || p.stderr().includes('renewal stopped'))
    // Expiries: 600, about 900, then 1000 (capped) twice more: after the second, no renewal is made.
    expect(t.broker.seen.length).toBeLessThanOrEqual(5)
    expect(t.broker.seen.every((r) => r.at < brokerEnd)).toBe(true)
    expect(p.stderr()).toContain('renewal done')
    t.stop()
    expect(await p.exit).toBe(0)
  })

  // The cap judged from the local clock at the answer plus expires_in moved with each answer's latency: a capped token
  // whose answer came a few seconds slower than the last looked extended, and the pilot went on halving towards the cap.
  it('stops at the broker\'s cap however long each answer took to arrive', async () => {
    const brokerEnd = START + 1000
    let clockFile = ''
    const t = await setup({
      reply: (req, i) => {
        if (brokerEnd - req.at <= 0) return { status: 400, body: { error: 'invalid_grant' } }
        const life = Math.min(600, brokerEnd - req.at)
        // Each renewal's answer reaches the pilot 3 s later than the one before (the fake clock moves on meanwhile).
        if (i > 0) writeFileSync(clockFile, String(req.at + 3 * i))
        return idTokenReply(fakeIdToken(TRUST, i, req.at + life), life)
      },
      fakeClockStart: START,
    })
    clockFile = t.stubs.clockFile
    const p = t.run()
    await until(() => p.stderr().includes('renewal done') || p.stderr().includes('renewal stopped'))
    // Expiries: 600, about 870, 1000 (capped), then 1000 twice: the second of those is the last renewal.
    expect(p.stderr()).toContain('renewal done: the broker no longer extends the token')
    expect(t.broker.seen).toHaveLength(5)
    t.stop()
    expect(await p.exit).toBe(0)
  })

  // A renewal's token lives the policy's lifetime from the renewal, capped at the job end the broker recorded. An operator
  // who shortens the lifetime (policy reload) makes the next renewal's token expire before the one it replaced, though
  // the job end is far off: the pilot took that for the cap, stopped renewing, and the startd lost its token mid-job.
  it('keeps renewing when a renewal expires earlier than the token it replaced (a shorter lifetime, not the job end)', async () => {
    const t = await setup({
      reply: (req, i) => { const life = i === 0 ? 600 : 200; return idTokenReply(fakeIdToken(TRUST, i, req.at + life), life) },
      fakeClockStart: START, endIn: 1500,
    })
    const p = t.run()
    await until(() => p.stderr().includes('renewal done') || p.stderr().includes('renewal stopped'))
    expect(p.stderr()).not.toContain('the broker no longer extends the token')
    expect(p.stderr()).toContain('renewal done: the token outlives the job\'s end minus the drain margin')
    // Tokens of 200 s renewed at about 100 s each, up to end minus drain (START + 1200): the last one outlives it.
    const last = t.broker.seen.at(-1)!
    expect(last.at + 200).toBeGreaterThan(START + 1500 - 300)
    t.stop()
    expect(await p.exit).toBe(0)
  })

  // A lowered lifetime can also land a renewal's exp on the very second of the last one (halved from 600 to 300 s and
  // renewed at exactly half life, say): that one renewal looks like the cap, yet the next one extends the token.
  it('does not take one renewal that happens to keep the same exp for the broker\'s cap', async () => {
    let lastExp = 0
    const t = await setup({
      reply: (req, i) => {
        // After the one coincidence, never a second: the schedule's jitter could land a renewal 200 s before
        // the last exp, and two equal in a row are the cap by design (894ddd0).
        const exp = i === 0 ? req.at + 600 : i === 1 ? lastExp : req.at + 200 === lastExp ? req.at + 201 : req.at + 200
        lastExp = exp
        return idTokenReply(fakeIdToken(TRUST, i, exp), exp - req.at)
      },
      fakeClockStart: START, endIn: 1500,
    })
    const p = t.run()
    await until(() => p.stderr().includes('renewal done') || p.stderr().includes('renewal stopped'))
    expect(p.stderr()).not.toContain('the broker no longer extends the token')
    expect(p.stderr()).toContain('renewal done: the token outlives the job\'s end minus the drain margin')
    expect(t.broker.seen.at(-1)!.at + 200).toBeGreaterThan(START + 1500 - 300)
    t.stop()
    expect(await p.exit).toBe(0)
  })

  // HTCondor skips a token whose iss is not its TRUST_DOMAIN without a word (docs/htcondor-tokens.md): the redemption
  // refused such a token, but a renewal wrote it over the live one, leaving the startd with no token it would use
  // while the one it replaced was still good.
  it('keeps the live token and stops renewing when a renewal answers an IDTOKEN of another issuer', async () => {
    const t = await setup({ reply: (_, i) => idTokenReply(fakeIdToken(i === 0 ? TRUST : 'other.example.org', i), 600), fakeClockStart: START })
    const p = t.run()
    await until(() => p.stderr().includes('renewal stopped') || p.stderr().includes('renewal done'))
    expect(t.broker.seen).toHaveLength(2)
    expect(p.stderr()).toContain('renewal stopped: the renewed IDTOKEN\'s issuer "other.example.org" is not the trust domain')
    expect(readFileSync(join(t.local, 'tokens.d', 'pilot'), 'utf8')).toBe(`${fakeIdToken(TRUST, 0)}\n`)
    t.stop()
    expect(await p.exit).toBe(0)
  })

  it('stops on a 400 at renewal without retrying', async () => {
    const t = await setup({ reply: (_, i) => (i === 0 ? idTokenReply(fakeIdToken(TRUST, 0), 200) : { status: 400, body: { error: 'invalid_grant' } }), fakeClockStart: START })
    const p = t.run()
    await until(() => p.stderr().includes('renewal stopped'))
    expect(t.broker.seen).toHaveLength(2)
    t.stop()
    expect(await p.exit).toBe(0)
  })
})

/** Every regular file under dir, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)).filter((f) => existsSync(f) && statSync(f).isFile())
}

describe('pilot script: a two-node job', () => {
  const tokenLine = (log: string) => log.split('\n').find((l) => l.startsWith('token '))?.split(' ')

  it('starts one task per node with srun; each redeems the credential for its own node and gets its own token', async () => {
    const t = await setup({ nodes: 2, reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600) })
    const p = t.run()
    await until(() => tokenLine(t.nodeLog('wn01')) !== undefined && tokenLine(t.nodeLog('wn02')) !== undefined)
    expect(readFileSync(join(t.dir, 'srun.args'), 'utf8').trim().split('\n'))
      .toEqual(['--nodes=2', '--ntasks=2', '--ntasks-per-node=1', '--cpus-per-task=8', '--kill-on-bad-exit=0', '--input=all'])
    const redemptions = t.broker.seen.map((r) => r.params)
    expect(redemptions).toHaveLength(2)
    const common = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'enrol+ment/cred=1', subject_token_type: ENROLMENT, slurm_job_id: JOB, job_end: String(t.start + 3600), slurm_restart_count: '0' }
    expect([...redemptions].sort((a, b) => a.node!.localeCompare(b.node!))).toEqual([{ ...common, node: 'wn01' }, { ...common, node: 'wn02' }])
    const seen = ['wn01', 'wn02'].map((n) => tokenLine(t.nodeLog(n))!)
    for (const [i, n] of ['wn01', 'wn02'].entries()) {
      // [mode, inode, 'dir', dirMode, 'staged', staged, ...]: each node's token is its own, 0600 in its own 0700 dir;
      // the staged credential stays while the job runs, for a requeued run.
      expect([seen[i]![1], seen[i]![4], seen[i]![6]]).toEqual(['600', '700', 'present'])
      expect(t.nodeLog(n)).toContain(`config ${t.localOf(n)}/condor_config`)
      // The redeemed copy is deleted at once.
      expect(readdirSync(join(t.localOf(n), 'work'))).not.toContain('.enrolment')
    }
    // The broker numbers its answers: the two nodes hold the two different tokens it issued.
    expect(new Set(seen.map((l) => l[11]))).toEqual(new Set([fakeIdToken(TRUST, 0), fakeIdToken(TRUST, 1)]))
    t.stop()
    expect(await p.exit).toBe(0)
    expect(existsSync(t.staged)).toBe(false)
    expect(readdirSync(join(t.dir, 'node'))).toEqual([])
    // Beyond the staged file, now gone, the credential was never written anywhere the job ran, in any form.
    for (const f of filesUnder(t.dir)) expect(readFileSync(f, 'utf8'), f).not.toContain('enrol+ment/cred=1')
  })

  it.each(['SIGUSR1', 'SIGTERM'] as const)('passes %s from the batch shell to every node, which drain and whose status it exits with', async (sig) => {
    const t = await setup({ nodes: 2, reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { FAKE_TERM_EXIT: '3' } })
    const p = t.run()
    await until(() => tokenLine(t.nodeLog('wn01')) !== undefined && tokenLine(t.nodeLog('wn02')) !== undefined)
    p.child.kill(sig)
    expect(await p.exit).toBe(3)
    expect(t.nodeLog('wn01')).toMatch(/^TERM$/m)
    expect(t.nodeLog('wn02')).toMatch(/^TERM$/m)
    expect(p.stderr()).toContain(`received ${sig}: passing SIGTERM to every node's task`)
    expect(readFileSync(join(t.dir, 'scancel.args'), 'utf8')).toBe(`--signal=TERM ${JOB}\n`)
    expect(readdirSync(join(t.dir, 'node'))).toEqual([])
    // As for one node: kept for a requeued run after SIGTERM only.
    expect(existsSync(t.staged)).toBe(sig === 'SIGTERM')
  })

  it('on the job\'s last allowed run deletes the staged file before any node redeems; every node states the restart', async () => {
    // Whether the staged file was still there when each redemption reached the broker.
    const stagedAtRedemption: boolean[] = []
    let stagedPath = ''
    const t = await setup({
      nodes: 2, env: { SLURM_RESTART_COUNT: '2' },
      reply: (_, i) => { stagedAtRedemption.push(existsSync(stagedPath)); return idTokenReply(fakeIdToken(TRUST, i), 3600) },
    })
    stagedPath = t.staged
    const p = t.run()
    await until(() => tokenLine(t.nodeLog('wn01')) !== undefined && tokenLine(t.nodeLog('wn02')) !== undefined)
    expect(stagedAtRedemption).toEqual([false, false])
    expect(t.broker.seen.map((r) => r.params.slurm_restart_count)).toEqual(['2', '2'])
    p.child.kill('SIGTERM')
    await p.exit
    expect(existsSync(t.staged)).toBe(false)
  })

  it('beyond --max-requeues starts no node task, asks the broker nothing and deletes the staged file', async () => {
    const t = await setup({ nodes: 2, reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { SLURM_RESTART_COUNT: '3' } })
    const p = t.run()
    expect(await p.exit).toBe(1)
    expect(p.stderr()).toContain('the job was restarted 3 times, more than the 2 this pilot allows (--max-requeues)')
    expect(existsSync(join(t.dir, 'srun.args'))).toBe(false)
    expect(t.broker.seen).toEqual([])
    expect(existsSync(t.staged)).toBe(false)
  })

  it('exits with the highest of the nodes\' command statuses', async () => {
    const t = await setup({ nodes: 2, reply: (_, i) => idTokenReply(fakeIdToken(TRUST, i), 3600), env: { FAKE_EXIT_wn01: '2', FAKE_EXIT_wn02: '5' } })
    const p = t.run()
    await until(() => tokenLine(t.nodeLog('wn01')) !== undefined && tokenLine(t.nodeLog('wn02')) !== undefined)
    t.stop()
    expect(await p.exit).toBe(5)
    expect(p.stderr()).toContain('exit status 5')
  })

  it('with a credential good for one pilot only, the second node is refused and the first keeps running', async () => {
    // What the broker does when pilot_count is below the job's node count: the extra redemption is invalid_grant.
    const t = await setup({ nodes: 2, reply: (_, i) => (i === 0 ? idTokenReply(fakeIdToken(TRUST, 0), 3600) : { status: 400, body: { error: 'invalid_grant' } }) })
    const p = t.run()
    await until(() => p.stderr().includes('HTTP 400 (invalid_grant)') && (tokenLine(t.nodeLog('wn01')) !== undefined || tokenLine(t.nodeLog('wn02')) !== undefined))
    const started = ['wn01', 'wn02'].filter((n) => tokenLine(t.nodeLog(n)) !== undefined)
    expect(started).toHaveLength(1)
    expect(t.broker.seen).toHaveLength(2)
    // The refused node gave up; the other still runs its command until it ends by itself.
    await new Promise((r) => setTimeout(r, 300))
    expect(p.child.exitCode).toBeNull()
    t.stop()
    expect(await p.exit).toBe(1)
  })
})
