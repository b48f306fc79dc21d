import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { OperatorError } from '../errors.ts'
import { readSecretFile, writeSecretFileAtomic } from '../lib/secure_file.ts'
import type { PublicJwk } from './jwk.ts'
import type { KeyStore } from './key_store.ts'

/** A public key kept in /jwks past its keyring publish_until, until `until` (epoch seconds). */
export interface HeldPublication { jwk: PublicJwk; until: number }

/**
 * `<data_dir>/keys/held_publications.json`: the keys a reload held (reload_keys.ts) with when each may go,
 * so that a restart before then publishes them again. It lies beside jwt/, not in it: it is this broker's
 * own record, which `keys rotate` never writes, a copy of jwt/ from another host never carries, and the
 * keyring watcher never reacts to. It names kids only; each public key comes from its `<kid>.pem`.
 */
export function heldPublicationsFile(keyDir: string): string {
  return join(keyDir, 'held_publications.json')
}

/**
 * The held keys still needed at `now` and not in `published` (the keyring publishes them again). A file
 * that cannot be read, or names a key whose file is gone, is refused like a bad keyring: starting without
 * the key would strand the tokens it signed without a word.
 */
export function readHeldPublications(store: KeyStore, now: number, published: readonly PublicJwk[]): HeldPublication[] {
  const file = heldPublicationsFile(store.dir)
  if (!existsSync(file)) return []
  let entries: unknown
  try {
    entries = (JSON.parse(readSecretFile(file).toString('utf8')) as { held?: unknown }).held
  } catch (err) {
    throw new OperatorError('EKEYRING', `${file} is not valid JSON (${(err as Error).message})`)
  }
  if (!Array.isArray(entries) || !entries.every((e) => typeof e?.kid === 'string' && Number.isSafeInteger(e?.until))) {
    throw new OperatorError('EKEYRING', `${file} must hold {"held": [{"kid": string, "until": epoch seconds}, …]}`)
  }
  const kids = new Set(published.map((k) => k.kid))
  const out: HeldPublication[] = []
  for (const e of entries as { kid: string; until: number }[]) {
    if (e.until <= now || kids.has(e.kid)) continue
    try {
      out.push({ jwk: store.publicJwkOf(e.kid), until: e.until })
    } catch (err) {
      throw new OperatorError('EKEYRING', `${file}: held key ${e.kid} cannot be published until ${new Date(e.until * 1000).toISOString()}: ${(err as Error).message}`)
    }
    kids.add(e.kid)
  }
  return out
}

/** Records the held keys (an empty list when none), replacing the file whole. */
export function writeHeldPublications(keyDir: string, held: readonly HeldPublication[]): void {
  const entries = held.map((h) => ({ kid: h.jwk.kid, until: h.until }))
  writeSecretFileAtomic(heldPublicationsFile(keyDir), `${JSON.stringify({ held: entries }, null, 2)}\n`)
}

/** Whether two hold lists name the same keys until the same times (a reload that changed none writes nothing). */
export function sameHolds(a: readonly HeldPublication[], b: readonly HeldPublication[]): boolean {
  const key = (l: readonly HeldPublication[]) => l.map((h) => `${h.jwk.kid}@${h.until}`).sort().join(' ')
  return key(a) === key(b)
}
