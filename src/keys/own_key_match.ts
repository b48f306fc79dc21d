import { readdirSync, readFileSync, realpathSync } from 'node:fs'
import { join, sep } from 'node:path'
import { timingSafeEqual } from 'node:crypto'
import { OperatorError } from '../errors.ts'
import { deriveIdTokenKey } from './condor_key_file.ts'
import type { KeyStore } from './key_store.ts'

/**
 * Says which of the broker's own keys `file` is, or undefined if it is none of them. `token create
 * --key-file` mints unchecked and unaudited, which is only acceptable for a key the broker does not
 * own: with one of its own, the token would be indistinguishable from an issued one yet bypass policy
 * and audit. So a match is sought three ways, each defeating one way around the one before:
 *   - the resolved path lies in the key store (symlinks, `..`, the store's directory itself);
 *   - the bytes equal one of its HTCondor keys (imported POOL keys included) or SciToken PEMs (copies,
 *     hard links, the original of an imported key);
 *   - the HS256 key derived from the file under `kid` equals one derived from a broker key under its
 *     name (POOL is derived from the key twice over, so other bytes can yield the same signing key).
 * A broker key that cannot be read is an error: the answer would otherwise be a guess.
 */
export function findOwnKey(store: KeyStore, file: string, fileBytes: Uint8Array, kid: string): string | undefined {
  const storeDir = resolved(store.dir)
  const filePath = resolved(file)
  if (storeDir !== undefined && filePath !== undefined && (filePath === storeDir || filePath.startsWith(storeDir + sep))) {
    return `a file in the broker's key store ${store.dir}`
  }
  const derived = deriveIdTokenKey(fileBytes, kid)
  for (const k of ownCondorKeys(store)) {
    const own = readOwn(k.path)
    if (Buffer.from(fileBytes).equals(own)) return `a copy of the broker's HTCondor key ${k.name}`
    if (timingSafeEqual(derived, deriveIdTokenKey(own, k.name))) return `the broker's HTCondor key ${k.name} under another name`
  }
  const jwtDir = join(store.dir, 'jwt')
  for (const name of listOrEmpty(jwtDir).filter((n) => n.endsWith('.pem'))) {
    if (Buffer.from(fileBytes).equals(readOwn(join(jwtDir, name)))) return `a copy of the broker's SciToken key ${name.slice(0, -4)}`
  }
  return undefined
}

function ownCondorKeys(store: KeyStore): { name: string; path: string }[] {
  try {
    return store.listCondorKeys()
  } catch (err) {
    throw new OperatorError('EOWNKEY', `cannot list the broker's HTCondor keys in ${store.dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
}

function resolved(path: string): string | undefined {
  try {
    return realpathSync(path)
  } catch {
    return undefined
  }
}

function readOwn(path: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new OperatorError('EOWNKEY', `cannot compare with the broker's key ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
}

function listOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw new OperatorError('EOWNKEY', `cannot list the broker's keys in ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
}
