import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { freePort } from '../support/peers.ts'
import { tempDir } from '../support/tmp.ts'

const ROOT = join(import.meta.dirname, '../..')

/** The pids of `pid`'s children (Linux: /proc/PID/task/TID/children). */
function childrenOf(pid: number): number[] {
  const file = `/proc/${pid}/task/${pid}/children`
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) : []
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * In a checkout on a Node that cannot strip types, the bin runs the sources in a child Node. Whoever
 * stops the command (systemd, a terminal, a test harness) signals the process it started: that signal
 * must reach the broker, which drains and exits, and the command must end with the broker's status.
 */
describe('the bin, re-spawning the sources under a Node without type stripping', () => {
  it('hands SIGTERM to the broker it started and exits 0 once the broker has drained', async () => {
    const dir = tempDir('ctb-respawn-')
    const env = {
      ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: String(await freePort()), CTB_DEV_IAM_PORT: String(await freePort()),
      CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false',
    }
    // --no-experimental-strip-types gives this Node 24 the features of one without type stripping.
    const parent = spawn(process.execPath, ['--no-experimental-strip-types', join(ROOT, 'bin/condor-token-broker.js'), 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    parent.stdout.on('data', (c) => { out += c })
    parent.stderr.on('data', (c) => { err += c })
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => parent.once('exit', (code, signal) => r({ code, signal })))
    let broker: number | undefined
    try {
      for (let i = 0; i < 300 && !out.includes('serving at'); i++) await new Promise((r) => setTimeout(r, 100))
      expect(out, err.slice(-600)).toContain('serving at')
      ;[broker] = childrenOf(parent.pid!)
      expect(broker, 'the bin started no child').toBeDefined()

      parent.kill('SIGTERM')
      const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))])
      expect(exit, 'the bin did not exit within 20 s of SIGTERM').toEqual({ code: 0, signal: null })
      expect(out).toMatch(/SIGTERM: draining/)
      expect(out).toMatch(/stopped cleanly/)
      for (let i = 0; i < 50 && alive(broker!); i++) await new Promise((r) => setTimeout(r, 100))
      expect(alive(broker!), 'the broker outlived the bin').toBe(false)
    } finally {
      if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL')
      if (broker !== undefined && alive(broker)) process.kill(broker, 'SIGKILL')
    }
  }, 60_000)
})
