import { watch, type FSWatcher } from 'node:fs'
import type { Logger } from '../lib/logger.ts'
import type { Policy, PolicyContext } from './compile.ts'
import { formatIssue, loadPolicies, loadPolicyDir } from './load.ts'

export type ReloadTrigger = 'sighup' | 'watch' | 'manual'

/** One reload attempt, for the `policy.reloaded` audit event and logs. Holds no secrets. */
export type PolicyReloadEvent =
  | { ok: true; trigger: ReloadTrigger; digest: string; previousDigest: string; files: readonly string[]; rules: number }
  /** The new files were invalid; the previous policy (previousDigest) stays in force. */
  | { ok: false; trigger: ReloadTrigger; previousDigest: string; errors: string[] }

export interface PolicyHolderOptions {
  dir: string
  context: PolicyContext
  log?: Logger
  /** Reload when a file in `dir` changes (fs.watch on the directory). */
  watch?: boolean
  /** Reload on SIGHUP. */
  sighup?: boolean
  debounceMs?: number
}

/**
 * Holds the policy in force and swaps it atomically on reload (SIGHUP or a change in the policy
 * directory). An invalid new policy is refused and the old one kept, so a typo never opens or closes
 * the pool. `current` is a plain field read: reloading adds nothing to the decide hot path.
 */
export class PolicyHolder {
  #policy: Policy
  readonly #options: PolicyHolderOptions
  readonly #listeners = new Set<(e: PolicyReloadEvent) => void>()
  #watcher: FSWatcher | undefined
  #timer: NodeJS.Timeout | undefined
  readonly #onSighup = () => { this.reload('sighup') }

  /** Loads the initial policy; throws OperatorError (fail fast at start-up) if it is invalid. */
  constructor(options: PolicyHolderOptions) {
    this.#options = options
    this.#policy = loadPolicies(options.dir, options.context)
  }

  /** The policy in force. Read it once per request and pass it to `decide`. */
  get current(): Policy {
    return this.#policy
  }

  /** Subscribes to reload attempts (successful or refused); returns the unsubscribe function. */
  onReload(listener: (e: PolicyReloadEvent) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * Re-reads the directory now. A valid policy replaces the current one; an invalid one is refused and
   * reported. A successful load with unchanged content (same digest) is silent: editors and Kubernetes
   * ConfigMap swaps fire several events per change.
   */
  reload(trigger: ReloadTrigger = 'manual'): PolicyReloadEvent {
    const previousDigest = this.#policy.digest
    const r = loadPolicyDir(this.#options.dir, this.#options.context)
    if (!r.ok) {
      const event: PolicyReloadEvent = { ok: false, trigger, previousDigest, errors: r.issues.map(formatIssue) }
      this.#options.log?.error('policy reload refused; keeping the previous policy', { trigger, digest: previousDigest, errors: event.errors })
      this.#emit(event)
      return event
    }
    const event: PolicyReloadEvent = { ok: true, trigger, digest: r.policy.digest, previousDigest, files: r.policy.files, rules: r.policy.rules.length }
    if (r.policy.digest === previousDigest) return event
    this.#policy = r.policy
    this.#options.log?.info('policy reloaded', { trigger, digest: event.digest, previousDigest, rules: event.rules })
    this.#emit(event)
    return event
  }

  /** Starts the SIGHUP handler and the directory watcher (per options). Neither keeps the process alive. */
  start(): this {
    if (this.#options.sighup ?? true) process.on('SIGHUP', this.#onSighup)
    if (this.#options.watch ?? true) {
      try {
        this.#watcher = watch(this.#options.dir, { persistent: false }, () => this.#scheduleWatchReload())
        this.#watcher.on('error', (err) => this.#options.log?.warn('policy directory watch failed; SIGHUP still reloads', { err }))
      } catch (err) {
        this.#options.log?.warn('cannot watch the policy directory; SIGHUP still reloads', { err })
      }
    }
    return this
  }

  /** Stops watching and removes the SIGHUP handler. */
  close(): void {
    process.off('SIGHUP', this.#onSighup)
    this.#watcher?.close()
    this.#watcher = undefined
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** File events come in bursts (an editor's save, a ConfigMap swap): reload once they settle. */
  #scheduleWatchReload(): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.reload('watch')
    }, this.#options.debounceMs ?? 300)
    this.#timer.unref()
  }

  #emit(event: PolicyReloadEvent): void {
    for (const l of this.#listeners) {
      try {
        l(event)
      } catch (err) {
        // A failing listener (e.g. the audit writer) must not undo or block the swap; it reports itself.
        this.#options.log?.error('policy reload listener failed', { err })
      }
    }
  }
}
