import type { AuditEvent } from '../audit/audit_log.ts'
import type { Config } from '../config.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import type { KeyHolder } from './key_holder.ts'
import { sameHolds, writeHeldRecord, type HeldPublication } from './held_publications.ts'
import { KeyStore } from './key_store.ts'
import type { PublicJwk } from './jwk.ts'
import type { SigningKeys } from './signing_keys.ts'

export type KeyReloadResult =
  | {
    ok: true; kid: string; previousKid: string; jwks: string[]; idtokenChanged: boolean
    /** Why the HTCondor key file on disk cannot be read: the key in force signs on, the next start fails. */
    idtokenUnreadable?: string
  }
  | { ok: false; previousKid: string; error: string }

/**
 * Reloads the SciToken keyring from disk (after `keys rotate`): loads the new set, runs the self-test on
 * it and swaps only if it passes; on any failure the set in force stays and one line says why.
 *
 * The IDTOKEN key is deliberately kept: it also keys the seals of the audit anchor and the MACs of pilot
 * enrolment credentials, both derived from it when the broker starts, so a different HTCondor key on disk
 * (`keys import`) takes effect at the next restart, and the reload says so (docs/architecture.md).
 * Nothing is created here: a missing key is a failed reload, never a fresh key.
 */
export async function reloadSigningKeys(
  holder: KeyHolder, trigger: string,
  deps: { config: Config; selfTest: (keys: SigningKeys) => void; audit: { record(e: AuditEvent): Promise<unknown> }; clock: Clock; log: Logger },
): Promise<KeyReloadResult> {
  const { config, clock, log } = deps
  const previous = holder.current
  let result: KeyReloadResult
  try {
    const store = new KeyStore(`${config.data_dir}/keys`)
    const { active, jwks } = store.loadAsymmetricKeys(clock.now())
    let idtokenChanged = false
    let idtokenUnreadable: string | undefined
    try {
      const onDisk = store.loadIdTokenKey(config.idtoken.key)
      idtokenChanged = !onDisk.hmac.equals(previous.idtoken.hmac)
    } catch (err) {
      // An unreadable HTCondor key file changes nothing in force: the key loaded at start keeps signing. It
      // is no new key either: the next start refuses it, and the operator must hear that instead.
      idtokenUnreadable = (err as Error).message
    }
    const { held, dropped } = heldPublications(store, previous, jwks, clock.now(), config.scitoken.max_lifetime)
    for (const kid of dropped) log.error('a key held in /jwks past its publish_until is let go: its key file was removed or the keyring marks it compromised', { kid, file: `jwt/${kid}.pem` })
    const next: SigningKeys = { idtoken: previous.idtoken, scitoken: active, jwks: [...jwks, ...held.map((h) => h.jwk)], ...(held.length > 0 ? { held } : {}) }
    deps.selfTest(next)
    holder.swap(next)
    if (active.kid !== previous.scitoken.kid || !sameHolds(previous.held ?? [], held)) {
      // Recorded so a restart before `until` publishes them again, and one that finds the keyring rotated
      // past this key holds it (signing_keys.ts). The swap stands if it cannot be: the holds still apply
      // in memory, and the operator hears why.
      try {
        writeHeldRecord(store.dir, active.kid, held)
      } catch (err) {
        // With nothing held no key is lost now (a key directory serve cannot write to is a supported set-up):
        // only a later restart that takes a rotation up late cannot hold this key, which is worth a warning.
        if (held.length === 0) log.warn('could not record the kid this broker signs with; a restart that takes a later rotation up late cannot hold it', { file: 'held_publications.json', kid: active.kid, error: (err as Error).message })
        else log.error('could not record the keys held in /jwks; a restart before they expire drops them', { file: 'held_publications.json', error: (err as Error).message, held: held.map((h) => ({ kid: h.jwk.kid, until: h.until })) })
      }
    }
    result = { ok: true, kid: active.kid, previousKid: previous.scitoken.kid, jwks: next.jwks.map((k) => k.kid), idtokenChanged, ...(idtokenUnreadable ? { idtokenUnreadable } : {}) }
    for (const h of held) {
      if (h.jwk.kid === previous.scitoken.kid) log.warn('the keyring no longer publishes the key this broker signed with until now; it stays in /jwks until its last token expires', { kid: h.jwk.kid, until: h.until })
    }
    log.info('signing keys reloaded', { trigger, kid: active.kid, previous_kid: previous.scitoken.kid, published: result.jwks })
    if (idtokenUnreadable) log.error('the HTCondor (IDTOKEN) key file cannot be read; the key in force keeps signing, but serve will not start until it can', { key: config.idtoken.key, error: idtokenUnreadable })
    if (idtokenChanged) log.warn('the HTCondor (IDTOKEN) key on disk differs from the one in force; it takes effect at the next restart', { key: config.idtoken.key })
  } catch (err) {
    result = { ok: false, previousKid: previous.scitoken.kid, error: (err as Error).message }
    log.error('signing key reload refused; keeping the keys in force', { trigger, kid: previous.scitoken.kid, error: result.error })
  }
  const event: AuditEvent = {
    type: 'key.reloaded', time: clock.now(), decision: result.ok ? 'allow' : 'deny',
    reason: result.ok ? `${trigger}: signing with ${result.kid}` : `${trigger}: refused, keys in force kept`,
    detail: result.ok
      ? {
        kid: result.kid, previousKid: result.previousKid, published: result.jwks,
        ...(result.idtokenChanged ? { idtoken: 'changed on disk; takes effect at restart' } : {}),
        ...(result.idtokenUnreadable ? { idtoken: `unreadable on disk: ${result.idtokenUnreadable}` } : {}),
      }
      : { previousKid: result.previousKid, error: result.error },
  }
  await deps.audit.record(event).catch((err: unknown) => log.error('could not audit a key reload', { err }))
  return result
}

/**
 * Keys to keep publishing although the keyring on disk has dropped them. `keys rotate` dates the old key's
 * publish_until from when it ran, but a broker that takes the rotation up late (SIGHUP days later with
 * scitoken.watch_keys off or no file events; a replica's keys/jwt/ copied late) signed with that key until
 * this reload, and its tokens live up to max_lifetime (+60 s skew, as `keys rotate` allows) from now.
 * Held keys carry over further reloads until then, and over restarts through keys/held_publications.json.
 * A key whose `jwt/<kid>.pem` is gone is not held (`dropped`): removing the file is how an operator drops
 * a compromised key, and a running broker must honour it at its next reload as a restart does.
 */
function heldPublications(store: KeyStore, previous: SigningKeys, onDisk: PublicJwk[], now: number, maxLifetime: number): { held: HeldPublication[]; dropped: string[] } {
  const published = new Set(onDisk.map((k) => k.kid))
  const dropped: string[] = []
  // A kid `keys rotate --compromised` unpublished is let go like one whose file was removed, .pem or not
  // (a replica's copy of jwt/ that kept it).
  const compromised = store.compromisedKids()
  const stillThere = (kid: string) => (!compromised.has(kid) && store.hasJwtKeyFile(kid)) || (dropped.push(kid), false)
  const held = (previous.held ?? []).filter((h) => h.until > now && !published.has(h.jwk.kid) && stillThere(h.jwk.kid))
  const wasSigning = previous.jwks.find((k) => k.kid === previous.scitoken.kid)
  if (wasSigning && !published.has(wasSigning.kid) && !held.some((h) => h.jwk.kid === wasSigning.kid) && stillThere(wasSigning.kid)) {
    held.push({ jwk: wasSigning, until: now + maxLifetime + 60 })
  }
  return { held, dropped }
}
