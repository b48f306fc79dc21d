import { spawnSync } from 'node:child_process'
import { symlinkSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { expect, it } from 'vitest'
import { tempDir } from '../support/tmp.ts'

// The credmon checks what sits at a credential's name (lstat: a regular file, no link) and then reads it by
// name. Between the two, whoever can write the user's directory can put a FIFO there, and a read of a FIFO
// waits for a writer, synchronously: the credmon stopped for every user. Or a link, followed to any file the
// credmon may read. The read must judge what it opened. It runs in a child process with a deadline, so a
// read that waits makes this test fail instead of hanging it.
function readInChild(path: string): { status: number | null; out: string } {
  const module = resolve('src/clients/credmon/cred_dir.ts')
  const script = `import { nodeCredDirFs } from ${JSON.stringify(module)}; console.log(JSON.stringify(nodeCredDirFs.readText(${JSON.stringify(path)}) ?? null))`
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 5000, encoding: 'utf8' })
  return { status: r.status, out: r.stdout.trim() }
}

it('reads a regular file, and neither waits on a FIFO nor follows a link put in its place', () => {
  const dir = tempDir()
  const plain = join(dir, 'scitokens.top')
  writeFileSync(plain, '{"broker":"x"}')
  expect(readInChild(plain)).toEqual({ status: 0, out: JSON.stringify('{"broker":"x"}') })
  const fifo = join(dir, 'cms.use')
  expect(spawnSync('mkfifo', [fifo]).status).toBe(0)
  expect(readInChild(fifo)).toEqual({ status: 0, out: 'null' })
  const link = join(dir, 'other.top')
  symlinkSync(plain, link)
  expect(readInChild(link)).toEqual({ status: 0, out: 'null' })
})
