import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'

/** One request the fake broker saw, with the fake clock's time when it arrived. */
export interface SeenRequest { params: Record<string, string>; at: number }

export type Reply = { status: number; body?: unknown; headers?: Record<string, string> } | 'drop'

/**
 * A broker that speaks only the pilot wire contract on POST /token, over TLS on loopback, with replies chosen
 * by the test. The clock file, when given, stamps each request with the pilot's fake time.
 */
export async function startFakeBroker(dir: string, reply: (req: SeenRequest, index: number) => Reply, clockFile?: string) {
  const tls = await ensureDevTls(dir, ['127.0.0.1'])
  const seen: SeenRequest[] = []
  const server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, (req: IncomingMessage, res: ServerResponse) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { raw += c })
    req.on('end', () => {
      const at = clockFile ? Number(readFileSync(clockFile, 'utf8')) : Math.floor(Date.now() / 1000)
      const r: SeenRequest = { params: Object.fromEntries(new URLSearchParams(raw)), at }
      const index = seen.push(r) - 1
      if (req.method !== 'POST' || req.url !== '/token') { res.writeHead(404).end(); return }
      const out = reply(r, index)
      if (out === 'drop') { req.socket.destroy(); return }
      res.writeHead(out.status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...out.headers })
      res.end(typeof out.body === 'string' ? out.body : JSON.stringify(out.body ?? {}))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `https://127.0.0.1:${port}`,
    caFile: tls.caFile,
    seen,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

const b64u = (s: string) => Buffer.from(s).toString('base64url')

/** A JWT-shaped IDTOKEN (the pilot never checks the signature; HTCondor's collector does). */
/** `exp`, when given, is the token's expiry claim, as the broker writes it (its clock, epoch seconds). */
export function fakeIdToken(iss: string, n: number, exp?: number): string {
  const payload = { iss, sub: `pilot-${n}@pilots.${iss}`, jti: `j${n}`, ...(exp !== undefined ? { exp } : {}) }
  return `${b64u(JSON.stringify({ alg: 'HS256', kid: 'POOL' }))}.${b64u(JSON.stringify(payload))}.${b64u(`sig${n}`)}`
}

export function idTokenReply(token: string, expiresIn: number): Reply {
  return { status: 200, body: { access_token: token, issued_token_type: 'urn:htcondor:token-type:idtoken', token_type: 'N_A', expires_in: expiresIn, scope: 'condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER' } }
}

function executable(file: string, text: string): string {
  writeFileSync(file, text)
  chmodSync(file, 0o755)
  return file
}

/**
 * Bash-level stand-ins for what a compute node provides: squeue answering the job's end, and (optionally) a fake
 * clock whose sleep advances the time instantly and records each delay.
 */
export function nodeStubs(dir: string, opts: { jobId: string; end: number; fakeClockStart?: number }) {
  executable(join(dir, 'squeue'), `#!/bin/bash\n[[ "$*" == "-h -j ${opts.jobId} -o %e" ]] || exit 1\ndate -d @${opts.end} +%Y-%m-%dT%H:%M:%S\n`)
  const env: Record<string, string> = { PATH: `${dir}:${process.env.PATH}` }
  const clockFile = join(dir, 'clock')
  const sleepsFile = join(dir, 'sleeps')
  if (opts.fakeClockStart !== undefined) {
    writeFileSync(clockFile, String(opts.fakeClockStart))
    writeFileSync(sleepsFile, '')
    env.CTB_PILOT_NOW_CMD = executable(join(dir, 'now'), `#!/bin/bash\ncat '${clockFile}'\n`)
    env.CTB_PILOT_SLEEP_CMD = executable(join(dir, 'fake_sleep'),
      `#!/bin/bash\nt=$(( $(cat '${clockFile}') + $1 ))\necho "$t" > '${clockFile}.tmp' && mv '${clockFile}.tmp' '${clockFile}'\necho "$1" >> '${sleepsFile}'\nsleep 0.01\n`)
  }
  return { env, clockFile, sleepsFile }
}

/**
 * srun as the batch shell of a multi-node pilot uses it, for `nodes` nodes named wn01, wn02...: records its
 * options (one a line, up to the command) in srun.args, broadcasts its stdin to every task (--input=all), runs
 * the command once per node with SLURMD_NODENAME, SLURM_PROCID, FAKE_REC (the node's master-<node>.log) and
 * FAKE_EXIT_<node> as that node's FAKE_EXIT, forwards SIGUSR1 and SIGTERM to every task, and exits with the
 * highest task status, as srun does. With it, scancel: `scancel --signal=SIG <job>` records its arguments in
 * scancel.args and signals the tasks through this srun, as SLURM signals every process of the job's steps.
 */
export function fakeSrun(dir: string, nodes: number): string {
  executable(join(dir, 'scancel'), `#!/bin/bash\necho "$*" > '${dir}/scancel.args'\n[[ $1 =~ ^--signal=([A-Z0-9]+)$ ]] || exit 1\nkill -"\${BASH_REMATCH[1]}" "$(cat '${dir}/srun.pid')"\n`)
  return executable(join(dir, 'srun'), `#!/bin/bash
echo $$ > '${dir}/srun.pid'
: > '${dir}/srun.args'
input=
while [[ $1 == --* ]]; do echo "$1" >> '${dir}/srun.args'; [[ $1 == --input=all ]] && input=all; shift; done
[[ $input == all ]] || exit 98
data=$(cat; echo x); data=\${data%x}
pids=()
for (( i = 1; i <= ${nodes}; i++ )); do
  node=$(printf 'wn%02d' "$i")
  exit_var=FAKE_EXIT_$node
  printf '%s' "$data" | SLURMD_NODENAME=$node SLURM_PROCID=$((i - 1)) FAKE_REC='${dir}/master-'$node.log FAKE_EXIT=\${!exit_var:-\${FAKE_EXIT:-0}} "$@" &
  pids+=($!)
done
trap 'kill -USR1 "\${pids[@]}" 2>/dev/null' USR1
trap 'kill -TERM "\${pids[@]}" 2>/dev/null' TERM
max=0
for p in "\${pids[@]}"; do
  while :; do wait "$p"; st=$?; kill -0 "$p" 2>/dev/null || break; done
  (( st > max )) && max=$st
done
exit "$max"
`)
}

/**
 * The pilot command of the tests: records what it finds (token, modes, inode, staged file, whether the previous version survived, config) each time
 * the token changes, exits with $FAKE_EXIT when $DIR/stop appears, and on SIGTERM exits with $FAKE_TERM_EXIT
 * (or ignores it when FAKE_IGNORE_TERM=1). Bounded: it gives up after 60 s.
 */
export function fakeMaster(dir: string): string {
  return executable(join(dir, 'fake_master'), `#!/bin/bash
rec=\${FAKE_REC:-'${dir}/master.log'}
echo "pid $$" >> "$rec"
echo "config $CONDOR_CONFIG" >> "$rec"
cp "$CONDOR_CONFIG" '${dir}/condor_config.seen'
if [[ \${FAKE_IGNORE_TERM:-} == 1 ]]; then trap 'echo TERM-ignored >> "$rec"' TERM
else trap 'echo TERM >> "$rec"; exit \${FAKE_TERM_EXIT:-0}' TERM; fi
tokens=$(dirname "$CONDOR_CONFIG")/tokens.d
last=
for (( i = 0; i < 1200; i++ )); do
  # Open first, then read through the open file, so the recorded version, its inode and fd 3 agree even
  # when the pilot renews again in between.
  if exec 4<"$tokens/pilot"; then
    cur=$(cat <&4)
    if [[ $cur != "$last" ]]; then
      # fd 3 holds the previous version open: after a rename it still reads the old token; a rewrite in place
      # would show the new one.
      kept=none; [[ -n $last ]] && { [[ $(cat /proc/$$/fd/3) == "$last" ]] && kept=yes || kept=no; }
      echo "token $(stat -L -c '%a %i' /proc/$$/fd/4) dir $(stat -c %a "$tokens") staged $([[ -e \${FAKE_STAGED} ]] && echo present || echo gone) dotfiles $(ls -A "$tokens" | grep -c '^\\.') kept $kept $cur" >> "$rec"
      exec 3<&4
      last=$cur
    fi
    exec 4<&-
  fi 2>/dev/null
  [[ -e '${dir}/stop' ]] && exit \${FAKE_EXIT:-0}
  sleep 0.05
done
exit 99
`)
}

export interface PilotRun { child: ChildProcess; stderr: () => string; exit: Promise<number | null> }

/** Runs the rendered script under bash as sbatch would on the first node (no SLURM needed). */
export function runPilot(script: string, env: Record<string, string>): PilotRun {
  const child = spawn('bash', [script], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (c: string) => { err += c })
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))))
  return { child, stderr: () => err, exit }
}

/** Polls until cond() holds; bounded, so a broken pilot fails the test instead of hanging it. */
export async function until(cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 25))
  }
}
