import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { OperatorError } from '../errors.ts'
import { readSecretFile, writeSecretFileAtomic } from '../lib/secure_file.ts'
import type { PublicJwk } from './jwk.ts'
import type { KeyStore } from './key_store.ts'

/** A public key kept in /jwks past its keyring publish_until, until `until` (epoch seconds). */
export interface HeldPublication { jwk: PublicJwk; until: number }

/**
 * `<data_dir>/keys/held_publications.json`: the keys this broker holds in /jwks past their keyring
 * publish_until (reload_keys.ts) with when each may go, and the kid it signs with, so that a restart
 * before then publishes them again and a restart that takes a rotation up late holds the key it signed
 * with until then. It lies beside jwt/, not in it: it is this broker's own record, which `keys rotate`
 * never writes, a copy of jwt/ from another host never carries, and the keyring watcher never reacts to.
 * It names kids only; each public key comes from its `<kid>.pem`.
 */
export function heldPublicationsFile(keyDir: string): string {
  return join(keyDir, 'held_publications.json')
}

/** What held_publications.json says: the kid this broker signed with last, and the holds by kid. */
export interface HeldRecord { signing?: string; held: { kid: string; until: number }[] }

/** The record as written (none yet: no holds); one that cannot be read is refused like a bad keyring. */
export function readHeldRecord(keyDir: string): HeldRecord {
  const file = heldPublicationsFile(keyDir)
  if (!existsSync(file)) return { held: [] }
  // Read outside the parse: a file of the wrong mode or owner (a `serve` once run as root) is said to be
  // that, with readSecretFile's own hint, not misreported as bad JSON.
  const text = readSecretFile(file).toString('utf8')
  let parsed: { signing?: unknown; held?: unknown }
  try {
    parsed = JSON.parse(text) as typeof parsed
  } catch (err) {
    throw new OperatorError('EKEYRING', `${file} is not valid JSON (${(err as Error).message})`)
  }
  const { signing, held } = parsed ?? {}
  if (!Array.isArray(held) || !held.every((e) => typeof e?.kid === 'string' && Number.isSafeInteger(e?.until)) || (signing !== undefined && typeof signing !== 'string')) {
    throw new OperatorError('EKEYRING', `${file} must hold {"signing": kid, "held": [{"kid": string, "until": epoch seconds}, …]}`)
  }
  return { ...(signing !== undefined ? { signing } : {}), held: held as HeldRecord['held'] }
}

/**
 * The recorded holds still needed at `now` and not in `published` (the keyring publishes them again),
 * each public key from its own `<kid>.pem`, and the holds let go because that file is gone. Removing a
 * key's file is how an operator drops a compromised key, and refusing to start over it would take the
 * broker down in the middle of that incident, so such a hold is let go and the caller says so, as for
 * the inferred hold (signing_keys.ts). A file that is there but is not that key (or not a key id) is
 * refused: that is a damaged key directory, not a decision.
 */
export function resolveHolds(store: KeyStore, held: HeldRecord['held'], now: number, published: readonly PublicJwk[]): { holds: HeldPublication[]; dropped: string[] } {
  const kids = new Set(published.map((k) => k.kid))
  const compromised = store.compromisedKids()
  const holds: HeldPublication[] = []
  const dropped: string[] = []
  for (const e of held) {
    if (e.until <= now || kids.has(e.kid)) continue
    if (compromised.has(e.kid)) {
      dropped.push(`held key ${e.kid} (until ${new Date(e.until * 1000).toISOString()}) is no longer published: the keyring marks it compromised`)
      continue
    }
    if (/^[A-Za-z0-9_-]+$/.test(e.kid) && !store.hasJwtKeyFile(e.kid)) {
      dropped.push(`held key ${e.kid} (until ${new Date(e.until * 1000).toISOString()}) is no longer published: its jwt/${e.kid}.pem was removed`)
      continue
    }
    try {
      holds.push({ jwk: store.publicJwkOf(e.kid), until: e.until })
    } catch (err) {
      throw new OperatorError('EKEYRING', `${heldPublicationsFile(store.dir)}: held key ${e.kid} cannot be published until ${new Date(e.until * 1000).toISOString()}: ${(err as Error).message}`)
    }
    kids.add(e.kid)
  }
  return { holds, dropped }
}

/** Records the kid this broker signs with and the keys it holds (an empty list when none), replacing the file whole. */
export function writeHeldRecord(keyDir: string, signing: string, held: readonly HeldPublication[]): void {
  const record: HeldRecord = { signing, held: held.map((h) => ({ kid: h.jwk.kid, until: h.until })) }
  writeSecretFileAtomic(heldPublicationsFile(keyDir), `${JSON.stringify(record, null, 2)}\n`)
}

/** Whether two hold lists name the same keys until the same times (a reload that changed none writes nothing). */
export function sameHolds(a: readonly HeldPublication[], b: readonly HeldPublication[]): boolean {
  const key = (l: readonly HeldPublication[]) => l.map((h) => `${h.jwk.kid}@${h.until}`).sort().join(' ')
  return key(a) === key(b)
}
