import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../support/tmp.ts'

// `npm run demo | head` is how a new user skims it. The demo's temporary directory holds signing keys
// and a CA key: it must go whichever way the demo ends, including its reader going away or Ctrl-C.
const ROOT = join(import.meta.dirname, '../..')

function runDemo(tmp: string, stop: (child: ReturnType<typeof spawn>) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['scripts/demo.ts'], { cwd: ROOT, env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'ignore'] })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('demo did not end within 30 s')) }, 30_000)
    let stopped = false
    child.stdout!.on('data', (chunk: Buffer) => {
      if (!stopped && chunk.toString().includes('1. ')) { stopped = true; stop(child) }
    })
    child.once('exit', () => { clearTimeout(timer); resolve() })
  })
}

describe('npm run demo', () => {
  it('removes its temporary directory when its reader goes away', async () => {
    const tmp = tempDir()
    await runDemo(tmp, (child) => child.stdout!.destroy())
    expect(readdirSync(tmp)).toEqual([])
  }, 40_000)

  it('removes its temporary directory on SIGINT', async () => {
    const tmp = tempDir()
    await runDemo(tmp, (child) => child.kill('SIGINT'))
    expect(readdirSync(tmp)).toEqual([])
  }, 40_000)
})
