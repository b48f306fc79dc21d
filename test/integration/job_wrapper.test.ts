import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { requireTool } from '../support/peers.ts'
import { tempDir } from '../support/tmp.ts'

const WRAPPER = join(import.meta.dirname, '../../src/clients/credmon/job_wrapper.sh')
const DASH = requireTool('dash', 'dash')
// Three-part JWT-shaped strings: the wrapper must copy whatever token characters it finds, unchanged.
const TOKEN_A = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnLWE'
const TOKEN_B = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiIn0.c2lnLWI'

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** A fake sandbox: `$_CONDOR_CREDS` with the given .use files, and a scratch dir. */
function sandbox(uses: Record<string, string>) {
  const root = tempDir('ctb-wrap-')
  const creds = join(root, '.condor_creds')
  const scratch = join(root, 'scratch')
  for (const d of [creds, scratch]) mkdirSync(d, { recursive: true })
  for (const [name, body] of Object.entries(uses)) writeFileSync(join(creds, name), body, { mode: 0o600 })
  return { root, creds, scratch, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', _CONDOR_CREDS: creds, _CONDOR_SCRATCH_DIR: scratch } }
}

function wrap(env: NodeJS.ProcessEnv, job: string[], opts: { stdin?: string; onStart?: (pid: number) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(DASH, [WRAPPER, ...job], { env, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout!.on('data', (c) => { stdout += c })
    p.stderr!.on('data', (c) => { stderr += c })
    p.on('error', reject)
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
    if (p.stdin) {
      // A job that exits before reading its stdin closes the pipe: that is the job's business, not an error here.
      p.stdin.on('error', () => {})
      p.stdin.end(opts.stdin)
    }
    opts.onStart?.(p.pid!)
  })
}

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  for (let i = 0; i < ms / 50; i++) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return cond()
}

/** Processes whose command line holds `marker` (the job's argument, inherited by the refresher). */
function processesWith(marker: string): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker) } catch { return false }
  }).map(Number)
}

describe('job wrapper (dash)', () => {
  it('points BEARER_TOKEN_FILE at a 0600 bare copy of a JSON .use, passes args and stdin, exits with the job status', async () => {
    const s = sandbox({ 'scitokens.use': JSON.stringify({ access_token: TOKEN_A, expires_in: 1200 }) })
    const job = ['sh', '-c', 'printf "%s|" "$BEARER_TOKEN_FILE" "$(cat "$BEARER_TOKEN_FILE")" "$(stat -c %a "$BEARER_TOKEN_FILE")" "$1" "$(cat)"; exit 3', 'job', 'two words']
    const r = await wrap(s.env, job, { stdin: 'from stdin' })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(3)
    const [file, token, mode, arg, stdin] = r.stdout.split('|')
    expect(file!.startsWith(`${s.scratch}/`)).toBe(true)
    expect(token).toBe(TOKEN_A)
    expect(mode).toBe('600')
    expect(arg).toBe('two words')
    expect(stdin).toBe('from stdin')
  })

  it('copies the bare .use form (token and newline) as it is', async () => {
    const s = sandbox({ 'scitokens.use': `${TOKEN_B}\n` })
    const r = await wrap(s.env, ['sh', '-c', 'cat "$BEARER_TOKEN_FILE"'])
    expect(r.stdout).toBe(`${TOKEN_B}\n`)
  })

  it('reads a pretty-printed JSON .use and picks the .use named by CTB_BEARER_TOKEN_USE', async () => {
    const s = sandbox({ 'scitokens.use': `${TOKEN_A}\n`, 'cms_store.use': JSON.stringify({ expires_in: 60, access_token: TOKEN_B }, null, 2) })
    const r = await wrap({ ...s.env, CTB_BEARER_TOKEN_USE: 'cms_store' }, ['sh', '-c', 'cat "$BEARER_TOKEN_FILE"'])
    expect(r.stdout.trim()).toBe(TOKEN_B)
  })

  it('keeps the copy in step when the starter replaces the .use, and stops its refresher when the job ends', async () => {
    const s = sandbox({ 'scitokens.use': JSON.stringify({ access_token: TOKEN_A, expires_in: 1200 }) })
    const marker = `marker-${Date.now()}-${Math.random()}`
    const job = ['sh', '-c', 'while [ "$(cat "$BEARER_TOKEN_FILE")" != "$1" ]; do sleep 0.1; done; echo "$BEARER_TOKEN_FILE"', marker, TOKEN_B]
    const running = wrap({ ...s.env, CTB_BEARER_REFRESH_SECONDS: '1' }, job)
    await new Promise((r) => setTimeout(r, 300))
    writeFileSync(join(s.creds, '.scitokens.use.tmp'), JSON.stringify({ access_token: TOKEN_B, expires_in: 1200 }))
    renameSync(join(s.creds, '.scitokens.use.tmp'), join(s.creds, 'scitokens.use'))
    const r = await running
    expect(r.code).toBe(0)
    const copy = r.stdout.trim()
    // No temp file is left next to the copy, and the copy is gone with the refresher.
    expect(await until(() => processesWith(marker).length === 0)).toBe(true)
    // The refresher's last command (rm -rf) may still run after its shell is gone: dash execs it in place.
    expect(await until(() => readdirSync(s.scratch).length === 0), readdirSync(s.scratch).join(' ')).toBe(true)
    expect(existsSync(copy)).toBe(false)
  }, 20_000)

  it('delivers SIGTERM to the job, whose exit status is the wrapper\'s', async () => {
    const s = sandbox({ 'scitokens.use': `${TOKEN_A}\n` })
    let pid = 0
    const running = wrap(s.env, ['sh', '-c', 'trap "echo terminated; exit 7" TERM; echo ready; while :; do sleep 0.1; done'], { onStart: (p) => { pid = p } })
    await new Promise((r) => setTimeout(r, 500))
    process.kill(pid, 'SIGTERM')
    const r = await running
    expect(r.stdout).toBe('ready\nterminated\n')
    expect(r.code).toBe(7)
  })

  it('dies of the signal that kills the job (SIGINT reaches it too)', async () => {
    const s = sandbox({ 'scitokens.use': `${TOKEN_A}\n` })
    let pid = 0
    const running = wrap(s.env, ['sleep', '30'], { onStart: (p) => { pid = p } })
    await new Promise((r) => setTimeout(r, 500))
    process.kill(pid, 'SIGINT')
    const r = await running
    expect(r.signal).toBe('SIGINT')
  })

  it('runs the job unchanged, without BEARER_TOKEN_FILE, when there are no credentials', async () => {
    const s = sandbox({})
    const r = await wrap(s.env, ['sh', '-c', 'echo "[${BEARER_TOKEN_FILE-unset}]"; exit 5'])
    expect(r.stdout).toBe('[unset]\n')
    expect(r.code).toBe(5)
    const none = await wrap({ PATH: s.env.PATH }, ['sh', '-c', 'echo "[${BEARER_TOKEN_FILE-unset}]"'])
    expect(none.stdout).toBe('[unset]\n')
  })

  it('refuses a .use that holds no token, saying so, and still runs the job', async () => {
    const s = sandbox({ 'scitokens.use': '{"error":"x"}' })
    const r = await wrap(s.env, ['sh', '-c', 'echo "[${BEARER_TOKEN_FILE-unset}]"'])
    expect(r.stdout).toBe('[unset]\n')
    expect(r.stderr).toContain('holds no usable token')
    expect(readdirSync(s.scratch)).toEqual([])
  })

  it('keeps a BEARER_TOKEN_FILE the job already has when that file exists', async () => {
    const s = sandbox({ 'scitokens.use': `${TOKEN_A}\n` })
    const own = join(s.root, 'own')
    writeFileSync(own, 'mine')
    const r = await wrap({ ...s.env, BEARER_TOKEN_FILE: own }, ['sh', '-c', 'echo "$BEARER_TOKEN_FILE"'])
    expect(r.stdout.trim()).toBe(own)
    expect(statSync(own).size).toBe(4)
  })
})
