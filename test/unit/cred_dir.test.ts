import { spawnSync } from 'node:child_process'
import { existsSync, linkSync, lstatSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { expect, it } from 'vitest'
import { FILE_TOO_LARGE, nodeCredDirFs } from '../../src/clients/credmon/cred_dir.ts'
import { tempDir } from '../support/tmp.ts'

// The credmon checks what sits at a credential's name (lstat: a regular file, no link) and then reads it by
// name. Between the two, whoever can write the user's directory can put a FIFO there, and a read of a FIFO
// waits for a writer, synchronously: the credmon stopped for every user. Or a link, followed to any file the
// credmon may read. The read must judge what it opened. It runs in a child process with a deadline, so a
// read that waits makes this test fail instead of hanging it.
function readInChild(path: string): { status: number | null; out: string } {
  const module = resolve('src/clients/credmon/cred_dir.ts')
  const script = `import { nodeCredDirFs } from ${JSON.stringify(module)}; console.log(JSON.stringify(nodeCredDirFs.readText(${JSON.stringify(path)}, 65536) ?? null))`
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

// CREDMON_COMPLETE sits in the credential directory itself, which the credd's group may write (root:condor
// 2770), and the credmon runs as root. Touching it by name followed a link planted there: root created
// any missing file the link named (an empty /etc/nologin ends every login) or reset the times of one
// that exists. The touch must end with a regular file of our own at the name and leave the target alone.
it('touches CREDMON_COMPLETE without following a symbolic link planted at its name', () => {
  const dir = tempDir()
  const victim = join(dir, 'victim')
  const existing = join(dir, 'existing')
  writeFileSync(existing, 'root-owned config')
  utimesSync(existing, 1_000_000, 1_000_000)

  const complete = join(dir, 'CREDMON_COMPLETE')
  symlinkSync(victim, complete)
  nodeCredDirFs.touch(complete)
  expect(existsSync(victim)).toBe(false)
  expect(lstatSync(complete).isFile()).toBe(true)

  rmSync(complete)
  symlinkSync(existing, complete)
  nodeCredDirFs.touch(complete)
  expect(statSync(existing).mtimeMs).toBe(1_000_000_000)
  expect(readFileSync(existing, 'utf8')).toBe('root-owned config')
  expect(lstatSync(complete).isFile()).toBe(true)

  // A hard link names the other file itself: its times are not ours to set either.
  rmSync(complete)
  linkSync(existing, complete)
  nodeCredDirFs.touch(complete)
  expect(statSync(existing).mtimeMs).toBe(1_000_000_000)
  expect(statSync(complete).nlink).toBe(1)
})

it('touch creates CREDMON_COMPLETE when missing and moves its mtime forward when present', () => {
  const dir = tempDir()
  const complete = join(dir, 'CREDMON_COMPLETE')
  nodeCredDirFs.touch(complete)
  expect(lstatSync(complete).isFile()).toBe(true)
  utimesSync(complete, 1_000_000, 1_000_000)
  nodeCredDirFs.touch(complete)
  expect(statSync(complete).mtimeMs).toBeGreaterThan(Date.now() - 60_000)
})

// The credmon (root) reads files whose content a user chose: at most `maxBytes` of one is read, whatever its
// size. A sparse file of 4 GiB costs no disk, and read whole it would take seconds and fail past V8's string limit.
it('reads at most maxBytes of a file: one of 4 GiB is FILE_TOO_LARGE at once, one of exactly maxBytes is read', () => {
  const dir = tempDir()
  const huge = join(dir, 'huge.top')
  expect(spawnSync('truncate', ['-s', '4G', huge]).status).toBe(0)
  const started = performance.now()
  expect(nodeCredDirFs.readText(huge, 65536)).toBe(FILE_TOO_LARGE)
  expect(performance.now() - started).toBeLessThan(1000)
  const exact = join(dir, 'exact.top')
  writeFileSync(exact, 'x'.repeat(65536))
  expect(nodeCredDirFs.readText(exact, 65536)).toBe('x'.repeat(65536))
  writeFileSync(exact, 'x'.repeat(65537))
  expect(nodeCredDirFs.readText(exact, 65536)).toBe(FILE_TOO_LARGE)
})
