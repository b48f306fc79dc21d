import { watch, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { isSigningEntry, KeyStore } from './key_store.ts'
import type { SigningKeys } from './signing_keys.ts'

export interface KeyringWatchOptions {
  /** The broker's key directory (`<data_dir>/keys`); the SciToken keyring is its `jwt/` folder. */
  dir: string
  /** The keys in force, to tell a real rotation from a burst of file events that changed nothing. */
  inForce: () => SigningKeys
  /** The same reload SIGHUP runs (self-tested, swapped whole, audited). */
  reload: (trigger: string) => Promise<unknown>
  clock: Clock
  log: Logger
  debounceMs?: number
  /**
   * The keyring was still unreadable once its files settled: no reload is run (it would be refused and
   * audited for a file that may yet be completed), but the next restart would fail on it, so it is counted.
   */
  onUnreadable?: () => void
}

/**
 * `keys rotate` takes effect in a running broker without a signal: the broker watches the SciToken
 * keyring and, once its files settle, takes up the new key through the same reload as SIGHUP. An admin
 * on the broker host rotates and is done, as with `condor_store_cred` or a policy edit; SIGHUP still
 * works where the file system gives no change events (some network file systems).
 *
 * Only a change of the active kid or of the published set reloads: writing a key is several file events
 * (the PEM, then the keyring renamed over), and a reload that changes nothing would only add an audit
 * record. Returns the function that stops watching; the watcher never keeps the process alive.
 */
export function watchKeyring(options: KeyringWatchOptions): () => void {
  const { dir, inForce, reload, clock, log } = options
  const store = new KeyStore(dir)
  let timer: NodeJS.Timeout | undefined
  // One reload at a time: a second burst during a reload waits for it rather than racing the swap.
  let running: Promise<unknown> = Promise.resolve()
  let watcher: FSWatcher | undefined

  const check = () => {
    running = running.then(async () => {
      if (!keyringDiffers(store, inForce(), clock.now(), log, options.onUnreadable)) return
      await reload('watch')
    }).catch((err: unknown) => log.error('key directory reload failed', { err }))
  }
  try {
    watcher = watch(join(dir, 'jwt'), { persistent: false }, () => {
      if (timer) clearTimeout(timer)
      timer = setTimeout(() => { timer = undefined; check() }, options.debounceMs ?? 300)
      timer.unref()
    })
    watcher.on('error', (err) => log.warn('key directory watch failed; SIGHUP still reloads the keys', { err }))
  } catch (err) {
    log.warn('cannot watch the key directory; SIGHUP still reloads the keys', { err })
  }
  return () => {
    watcher?.close()
    watcher = undefined
    if (timer) clearTimeout(timer)
    timer = undefined
  }
}

/** True when the keyring on disk names another active key or another published set than the keys in force. */
function keyringDiffers(store: KeyStore, current: SigningKeys, now: number, log: Logger, onUnreadable?: () => void): boolean {
  let ring
  try {
    ring = store.readKeyring()
  } catch (err) {
    // The reload would refuse it too, and say so; a half-edited file is not worth an audit record.
    log.warn('the SciToken keyring is unreadable; keeping the keys in force', { error: (err as Error).message })
    onUnreadable?.()
    return false
  }
  const active = ring.find(isSigningEntry)?.kid
  const published = ring.filter((k) => k.compromised === undefined && (k.publish_until === undefined || k.publish_until > now)).map((k) => k.kid).sort()
  // Keys held past the keyring's publish_until (reload_keys.ts) are not the keyring's: they change nothing.
  const held = new Set((current.held ?? []).map((h) => h.jwk.kid))
  const inForce = current.jwks.map((k) => k.kid).filter((kid) => !held.has(kid)).sort()
  return active !== current.scitoken.kid || published.join(' ') !== inForce.join(' ')
}
