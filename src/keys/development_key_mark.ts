import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { readSecretFile, writeSecretFileAtomic } from '../lib/secure_file.ts'
import type { KeyStore } from './key_store.ts'

/**
 * Which HTCondor keys development mode made itself: `<keys>/development.json`, `{ "condor": { name: sha256 } }`.
 *
 * Development mode (no issuer, no iam.issuers) starts a development IAM that hands tokens for well-known users
 * to anyone on this host. With a key a pool trusts (`keys import` of its POOL, a key `keys init` made for
 * production, a file copied in) any local user could exchange those for IDTOKENs that pool accepts. So
 * development mode signs only with a key whose bytes it wrote down when it made it; everything else, a
 * replaced file included, is refused (fail closed). The mark holds a hash, not the key.
 */
function markFile(store: KeyStore): string {
  return join(store.dir, 'development.json')
}

function readMarks(store: KeyStore): Record<string, string> {
  const file = markFile(store)
  if (!existsSync(file)) return {}
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { condor?: unknown }
    const condor = parsed.condor
    if (typeof condor !== 'object' || condor === null || Array.isArray(condor)) return {}
    return Object.fromEntries(Object.entries(condor).filter((e): e is [string, string] => typeof e[1] === 'string'))
  } catch {
    // An unreadable mark marks nothing: the key is then refused, which is the safe side.
    return {}
  }
}

function keyHash(store: KeyStore, name: string): string {
  return createHash('sha256').update(readSecretFile(store.condorKeyPath(name))).digest('hex')
}

/** Records that development mode has just made the HTCondor key `name`. */
export function markDevelopmentKey(store: KeyStore, name: string): void {
  writeSecretFileAtomic(markFile(store), `${JSON.stringify({ condor: { ...readMarks(store), [name]: keyHash(store, name) } })}\n`)
}

/**
 * Why development mode must not sign with the existing HTCondor key `name`, or undefined: no such key yet
 * (development mode will make and mark one), or the very bytes it made.
 */
export function developmentKeyProblem(store: KeyStore, name: string): string | undefined {
  if (!store.hasCondorKey(name)) return undefined
  const path = store.condorKeyPath(name)
  let hash: string
  try {
    hash = keyHash(store, name)
  } catch (err) {
    return `the HTCondor signing key "${name}": ${(err as Error).message}`
  }
  if (readMarks(store)[name] === hash) return undefined
  return `development mode (no issuer, no iam.issuers) refuses the HTCondor signing key "${name}" at ${path}: development mode did not make it (keys import, keys init, or a file copied or replaced), and its development IAM gives tokens to anyone on this host, so a pool trusting that key would accept their IDTOKENs; set issuer and iam.issuers for production, or use another data_dir (or remove that file) for development`
}

/**
 * Why a broker with a public issuer must not sign with the existing HTCondor key `name`, or undefined: the
 * key is the very one development mode made. Its development IAM handed IDTOKENs signed with it to anyone on
 * that host, and they stay valid wherever the key is trusted, so it must never become a pool's key (a
 * development data_dir given an issuer, or copied to the production host). A key that cannot be read is
 * left to the load that follows, which says why.
 */
export function productionKeyProblem(store: KeyStore, name: string): string | undefined {
  if (!store.hasCondorKey(name)) return undefined
  let hash: string
  try {
    hash = keyHash(store, name)
  } catch {
    return undefined
  }
  if (readMarks(store)[name] !== hash) return undefined
  return `the HTCondor signing key "${name}" at ${store.condorKeyPath(name)} was made by development mode, whose development IAM gave IDTOKENs signed with it to anyone on that host, and a pool trusting this key would accept them: a broker with a public issuer needs a key of its own (move this one away and run "condor-token-broker keys init", or "keys import FILE --name ${name}" to adopt the pool's key)`
}
