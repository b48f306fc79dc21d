import { randomBytes } from 'node:crypto'
import { chmodSync, lstatSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import type { Bundle, Manifest } from './render.ts'

/** Whether anything is at `path`: a symlink counts even when it points nowhere (existsSync follows it). */
export function outputExists(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false }) !== undefined
}

/**
 * Writes every bundle and manifest.json into a fresh temporary directory beside `out`, then renames it to
 * `out` in one step: a reader sees all of it or nothing, and a failure leaves no partial output (the
 * temporary directory, which may hold secrets, is removed). `out` must not exist.
 */
export function writeBundles(out: string, bundles: readonly Bundle[], manifest: Manifest): void {
  const target = resolve(out)
  if (outputExists(target)) throw new Error(`${out} exists; choose a new --out directory (output is never merged into an old one)`)
  mkdirSync(dirname(target), { recursive: true })
  const temp = join(dirname(target), `.${basename(target)}.tmp-${randomBytes(6).toString('hex')}`)
  mkdirSync(temp, { mode: 0o700 })
  try {
    for (const b of bundles) {
      if (!/^[a-z][a-z0-9_-]*$/.test(b.name)) throw new TypeError(`bundle name ${b.name} is not a plain name`)
      for (const f of b.files) {
        const path = join(temp, b.name, f.path)
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
        writeFileSync(path, f.content, { mode: f.mode, flag: 'wx' })
        chmodSync(path, f.mode) // the umask must not widen or narrow what HTCondor checks
      }
    }
    writeFileSync(join(temp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644, flag: 'wx' })
    renameSync(temp, target)
  } catch (err) {
    rmSync(temp, { recursive: true, force: true })
    throw err
  }
}
