import { join } from 'node:path'
import { CREDENTIAL_NAME_PATTERN, MAX_MINIMUM_SECONDS, PROVIDER_PATTERN, USER_PATTERN, type GoneCredentialState } from '../../contract/job_credentials.ts'
import type { Clock } from '../../lib/clock.ts'
import type { Logger } from '../../lib/logger.ts'
import type { BrokerClient } from './client.ts'
import { FILE_TOO_LARGE, type CredDirFs, type FileInfo } from './cred_dir.ts'
import { refreshAt, retryAt } from './schedule.ts'
import { MAX_TOP_BYTES, parseBrokerTop } from './top_file.ts'
import { formatUse, MAX_USE_BYTES, tokenLife, useExpiry, type UseFormat } from './use_file.ts'

/** Touched after every full scan; the credd and schedd wait for it before trusting the directory. */
export const CREDMON_COMPLETE = 'CREDMON_COMPLETE'
/** Holds our pid; the credd and schedd send it SIGHUP to ask for a scan now. */
export const PID_FILE = 'pid'
/** HTCondor's credmons scan once a minute and on SIGHUP. */
export const SCAN_INTERVAL_SECONDS = 60

export interface CredmonOptions {
  credDir: string
  /** Provider names this credmon serves; other `.top` files belong to other credmons and are left alone. */
  providers: readonly string[]
  /** Origin of the broker we talk to; a `.top` naming another broker is not served (it would get our token). */
  brokerUrl: string
  useFormat: UseFormat
  /** Sent as `minimum_seconds`: a cached token with less life left is not reused by the broker. */
  minimumSeconds?: number
}

export interface CredmonDeps {
  fs: CredDirFs
  clock: Clock
  client: BrokerClient
  log: Logger
}

/**
 * Mode of every `.use`: owner read-only, owned by the credmon's user (root under the condor_master),
 * which is how HTCondor's own credmons leave it for the credd (running as root) to read.
 */
export const USE_FILE_MODE = 0o400

/** The temp file of an atomic replacement of `<name>` (lib/secure_file.ts): `.<name>.<12 hex digits>.tmp`. */
const OUR_TEMP = /^\.(.+)\.[0-9a-f]{12}\.tmp$/
/** `<provider>[_<handle>].use`. */
const USE_NAME = new RegExp(`${CREDENTIAL_NAME_PATTERN.source.slice(0, -1)}\\.use$`)

/** Per credential (`<user>/<provider>[_<handle>]`), what the credmon remembers between scans. */
interface CredState {
  /** Next time the broker is asked; a changed `.top` overrides it. */
  nextAt: number
  failures: number
  topMtime: number
  /** The `.top`'s device and inode: the credd replaces it by rename, which an mtime kept in whole seconds may not tell. */
  topId: string
  /** When the token in `.use` stops being valid, on our clock; absent while we know of none. */
  useExpiresAt?: number
  /** The last problem logged, so a 60-second loop does not repeat the same line. */
  lastProblem?: string
}

export interface ScanSummary {
  refreshed: number
  failed: number
  removed: number
}

/**
 * Our credmon: keeps `<user>/<provider>.use` fresh from the broker for every `.top` it serves, in the
 * layout HTCondor's credd reads (docs/credmon.md).
 */
export class Credmon {
  readonly #opt: CredmonOptions
  readonly #d: CredmonDeps
  readonly #providers: Set<string>
  readonly #origin: string
  readonly #state = new Map<string, CredState>()
  readonly #notServed = new Set<string>()
  readonly #marked = new Set<string>()

  constructor(options: CredmonOptions, deps: CredmonDeps) {
    for (const p of options.providers) {
      if (!PROVIDER_PATTERN.test(p)) throw new TypeError(`not a credential provider name: ${JSON.stringify(p)}`)
    }
    this.#opt = options
    this.#d = deps
    this.#providers = new Set(options.providers)
    this.#origin = new URL(options.brokerUrl).origin
  }

  /**
   * Start of a run: removes a `CREDMON_COMPLETE` left by an earlier run (it would tell waiters the
   * directory is current before our first scan) and writes the `pid` file the credd signals.
   */
  begin(pid: number): void {
    this.#d.fs.remove(join(this.#opt.credDir, CREDMON_COMPLETE))
    this.#removeLeftTempFiles()
    this.#d.fs.writeAtomic(join(this.#opt.credDir, PID_FILE), String(pid), 0o644)
  }

  /**
   * A credmon killed between creating a `.use`'s temp file and renaming it (SIGKILL, power loss) leaves the
   * temp file behind, holding a token, and nothing else would ever remove it before the credd sweeps the
   * user. At start no write of ours is under way (one credmon per directory), so ours are removed: only
   * regular files named exactly as our writes name them, never another writer's.
   */
  #removeLeftTempFiles(): void {
    const { fs } = this.#d
    const dir = this.#opt.credDir
    const ours = (name: string, target: RegExp) => {
      const m = OUR_TEMP.exec(name)
      return m !== null && target.test(m[1]!)
    }
    for (const name of fs.list(dir)) if (ours(name, /^pid$/)) fs.removeFile(join(dir, name))
    for (const user of fs.list(dir)) {
      if (!USER_PATTERN.test(user) || !fs.stat(join(dir, user))?.isDirectory) continue
      for (const name of fs.list(join(dir, user))) {
        if (ours(name, USE_NAME)) fs.removeFile(join(dir, user, name))
      }
    }
  }

  /** One full pass over the directory, then `CREDMON_COMPLETE` is touched. */
  async scan(): Promise<ScanSummary> {
    const { fs } = this.#d
    const summary: ScanSummary = { refreshed: 0, failed: 0, removed: 0 }
    const seen = new Set<string>()
    for (const user of fs.list(this.#opt.credDir).sort()) {
      if (!USER_PATTERN.test(user)) continue
      const userDir = join(this.#opt.credDir, user)
      const dirInfo = fs.stat(userDir)
      if (!dirInfo?.isDirectory) continue
      const marked = fs.stat(join(this.#opt.credDir, `${user}.mark`)) !== undefined
      this.#noteMark(user, marked)
      for (const name of fs.list(userDir).sort()) {
        if (!name.endsWith('.top')) continue
        const base = name.slice(0, -'.top'.length)
        const provider = base.split('_', 1)[0]!
        if (!this.#providers.has(provider)) continue
        const key = `${user}/${base}`
        seen.add(key)
        // The user has no jobs left: asking the broker would mint tokens nobody uses.
        if (marked) continue
        await this.#serve({ user, provider, base, key, dirId: dirInfo.id }, summary)
      }
    }
    for (const key of this.#state.keys()) if (!seen.has(key)) this.#state.delete(key)
    fs.touch(join(this.#opt.credDir, CREDMON_COMPLETE))
    return summary
  }

  /**
   * The user's directory is still the one the scan found (not swapped for a link or another directory
   * while the broker was asked). The credential directory is writable by the credd's group and we run as
   * root: a write or removal through a swapped name would land wherever the swap points.
   */
  #sameUserDir(user: string, dirId: string): boolean {
    const now = this.#d.fs.stat(join(this.#opt.credDir, user))
    return now?.isDirectory === true && now.id === dirId
  }

  async #serve(c: { user: string; provider: string; base: string; key: string; dirId: string }, summary: ScanSummary): Promise<void> {
    const { user, provider, base, key, dirId } = c
    const { fs, clock, log } = this.#d
    const now = clock.now()
    const topPath = join(this.#opt.credDir, user, `${base}.top`)
    const usePath = join(this.#opt.credDir, user, `${base}.use`)
    const topInfo = fs.stat(topPath)
    if (!topInfo?.isFile) return
    const text = fs.readText(topPath, MAX_TOP_BYTES)
    if (text === FILE_TOO_LARGE) {
      if (!this.#notServed.has(key)) log.warn(`credmon: not serving ${key}.top: it is larger than ${MAX_TOP_BYTES} bytes, which no .top the credential storer writes is; not read`, { user, provider })
      this.#notServed.add(key)
      return
    }
    const top = parseBrokerTop(text ?? '')
    // A handle's .top names its own credential (`<provider>_<handle>`); one written before the broker kept
    // handles apart names the provider, whose credential it then narrows. Anything else is another's.
    const refusal = !top ? 'it is not a broker credential'
      : top.user !== user ? `it names user ${top.user}`
      : top.provider !== base && top.provider !== provider ? `it names provider ${top.provider}`
      : !sameOrigin(top.broker_url, this.#origin) ? `it names another broker (${originOf(top.broker_url)})`
      : undefined
    if (refusal || !top) {
      if (!this.#notServed.has(key)) log.warn(`credmon: not serving ${key}.top: ${refusal}`, { user, provider })
      this.#notServed.add(key)
      return
    }
    this.#notServed.delete(key)

    let st = this.#state.get(key)
    if (!st || !sameTop(topInfo, st.topMtime, st.topId)) st = this.#initialState(usePath, topInfo, now, st)
    this.#state.set(key, st)
    if (now < st.nextAt) return

    const minimum = this.#minimumSeconds(st, now)
    const result = await this.#d.client.fetchJobToken(user, top.provider, {
      ...(minimum !== undefined ? { minimum_seconds: minimum } : {}),
      ...(top.scopes ? { scopes: top.scopes } : {}),
      ...(top.audience ? { audience: top.audience } : {}),
    })
    const after = clock.now()
    if (!this.#sameUserDir(user, dirId)) {
      this.#problem(st, `credmon: ${user}/ is no longer the directory the scan found; nothing written or removed for ${key}`, user, provider, true)
      return
    }
    if (result.kind === 'token') {
      // The answer is for the .top read before the request. Deleted meanwhile (condor_store_cred delete), a
      // .use written now would have no .top for any later scan to refresh or end it by, and the credd would
      // hand the deleted credential's token to jobs until it expired; replaced, the answer is for the old
      // registration's scopes, and the changed .top is served at the next scan (the credd's SIGHUP).
      const current = fs.stat(topPath)
      if (!current?.isFile || !sameTop(current, topInfo.mtime, topInfo.id)) {
        log.info(`credmon: not writing ${key}.use: its .top was ${current?.isFile ? 'replaced' : 'removed'} while the broker was asked`, { user, provider })
        return
      }
      const life = tokenLife(result.token.access_token, result.token.expires_in)
      try {
        fs.writeAtomic(usePath, formatUse(result.token.access_token, life, this.#opt.useFormat), USE_FILE_MODE)
      } catch (err) {
        st.failures += 1
        st.nextAt = retryAt(after, st.failures)
        summary.failed += 1
        this.#problem(st, `credmon: cannot write ${key}.use: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, user, provider)
        return
      }
      if (st.lastProblem) log.info(`credmon: ${key}.use refreshed again after: ${st.lastProblem}`, { user, provider })
      st.failures = 0
      st.lastProblem = undefined
      st.nextAt = refreshAt(after, life)
      st.useExpiresAt = after + life
      summary.refreshed += 1
      return
    }
    st.failures += 1
    summary.failed += 1
    if (result.kind === 'refused' && result.gone) {
      this.#endGone({ user, provider, key, topPath, usePath, askedTop: topInfo }, st, after, result.gone, result.reason, summary)
      return
    }
    if (result.kind === 'refused') {
      // Refused for now (the policy, fetched_by, a revoked user): a job must not keep using what it was
      // given, but the credential is still there, so the .top stays and the credmon resumes by itself
      // once an operator lifts the refusal.
      // Only the regular file we wrote: anything else at the name is left alone (removeFile), and an
      // error here must not end the scan of every user after this one.
      if (fs.removeFile(usePath)) {
        delete st.useExpiresAt
        summary.removed += 1
        log.warn(`credmon: removed ${key}.use: the broker refused the credential (${result.reason})`, { user, provider })
        st.lastProblem = `refused: ${result.reason}`
      } else {
        this.#problem(st, `credmon: the broker refused ${key} (${result.reason}); no .use written`, user, provider)
      }
      // Asked again only rarely (or at once when the .top changes: a new registration).
      st.nextAt = retryAt(after, Number.MAX_SAFE_INTEGER)
      return
    }
    st.nextAt = retryAt(after, st.failures, result.kind === 'unavailable' ? result.retryAfter : undefined)
    const kept = fs.stat(usePath) ? 'keeping the current .use' : 'no .use yet'
    const what = result.kind === 'unauthorized' ? 'the broker refused the credmon\'s own token' : 'broker unavailable'
    this.#problem(st, `credmon: ${what} for ${key} (${result.reason}); ${kept}; next try in ${st.nextAt - after} s`, user, provider, result.kind === 'unauthorized')
  }

  /**
   * The broker says the credential itself is gone for good (unknown, revoked, outdated). Its `.use` and its
   * `.top` are removed, as HTCondor's Vault credmon does on Vault's "permission denied": with the `.top`
   * gone the credd no longer holds the credential, so the user's next condor_submit stores a new one
   * instead of finding the dead one still held. Only this credential's two regular files go, and the
   * `.top` only if it is still the one the broker was asked about: one written meanwhile is a new
   * registration, served at the next scan.
   */
  #endGone(c: { user: string; provider: string; key: string; topPath: string; usePath: string; askedTop: FileInfo }, st: CredState, after: number, gone: GoneCredentialState, reason: string, summary: ScanSummary): void {
    const { fs, log } = this.#d
    const { user, provider, key } = c
    const useGone = fs.removeFile(c.usePath)
    const top = fs.stat(c.topPath)
    const replaced = !top?.isFile || !sameTop(top, c.askedTop.mtime, c.askedTop.id)
    const topGone = !replaced && fs.removeFile(c.topPath)
    if (useGone || topGone) summary.removed += 1
    const said = `the broker says the credential is ${gone} (${reason})`
    if (topGone) {
      this.#state.delete(key)
      log.warn(`credmon: removed ${useGone ? `${key}.use and ` : ''}${key}.top: ${said}; ${user}'s next condor_submit registers it again`, { user, provider })
      return
    }
    if (replaced) {
      // The changed .top makes the next scan serve the new registration at once.
      if (useGone) log.warn(`credmon: removed ${key}.use: ${said}; a new ${key}.top arrived meanwhile and is served next`, { user, provider })
      return
    }
    // Still there and not removable (no longer a regular file, or unlink refused): asked again only rarely.
    st.nextAt = retryAt(after, Number.MAX_SAFE_INTEGER)
    this.#problem(st, `credmon: ${said}, but ${key}.top could not be removed; the credd still holds it, so the user's next condor_submit will not register again`, user, provider, true)
  }

  /** A credential seen for the first time (or whose `.top` changed): when is its `.use` due? */
  #initialState(usePath: string, topInfo: FileInfo, now: number, previous: CredState | undefined): CredState {
    const { mtime: topMtime, id: topId } = topInfo
    const fresh: CredState = { nextAt: now, failures: 0, topMtime, topId }
    // A new or re-registered .top always gets a token now. The .use in place is the same as before: what it
    // has left still sets the minimum asked for, or a broker whose registration did not change (the same
    // .top stored again) hands back that very token and the next refresh comes at a quarter of its life.
    if (previous) return { ...fresh, ...(previous.useExpiresAt !== undefined ? { useExpiresAt: previous.useExpiresAt } : {}) }
    const use = this.#d.fs.stat(usePath)
    if (!use?.isFile || use.mtime < topMtime) return fresh
    const text = this.#d.fs.readText(usePath, MAX_USE_BYTES)
    const exp = useExpiry(text === FILE_TOO_LARGE ? '' : text ?? '', use.mtime)
    if (exp === undefined || exp <= now) return fresh
    // Restarted credmon: honour the half-life of the token already in place.
    return { nextAt: Math.min(Math.floor(use.mtime + (exp - use.mtime) / 2), exp), failures: 0, topMtime, topId, useExpiresAt: exp }
  }

  /**
   * `minimum_seconds` for a request: the configured one, and more than what the `.use` in place has left.
   * The broker hands back a cached token while it has `minimum_seconds` left; asked at the half-life point
   * of the token we hold, it would hand back that very token (its other half is more than a short
   * minimum), and the `.use` would be replaced only at a quarter of its life, too late for the starter's
   * copy every 300 s. Asking for a token that outlives ours makes the refresh the refresh it is meant to be.
   */
  #minimumSeconds(st: CredState, now: number): number | undefined {
    const configured = this.#opt.minimumSeconds
    const left = st.useExpiresAt !== undefined ? Math.ceil(st.useExpiresAt - now) : 0
    if (left <= 0) return configured
    return Math.min(Math.max(configured ?? 0, left + 1), MAX_MINIMUM_SECONDS)
  }

  #problem(st: CredState, line: string, user: string, provider: string, error = false): void {
    // Same kind of failure as last time: say it once, not every minute (the "next try" part varies).
    const kind = line.replace(/; next try in \d+ s$/, '')
    if (st.lastProblem === kind) return
    st.lastProblem = kind
    if (error) this.#d.log.error(line, { user, provider })
    else this.#d.log.warn(line, { user, provider })
  }

  #noteMark(user: string, marked: boolean): void {
    if (marked && !this.#marked.has(user)) this.#d.log.info(`credmon: ${user}.mark present: not refreshing ${user}'s credentials until a job needs them`, { user })
    if (marked) this.#marked.add(user)
    else this.#marked.delete(user)
  }
}

function originOf(url: string): string {
  try { return new URL(url).origin } catch { return 'an unreadable URL' }
}

function sameOrigin(url: string, origin: string): boolean {
  try { return new URL(url).origin === origin } catch { return false }
}

/**
 * The `.top` is still the one seen before: same mtime and same file. The credd stores a new registration by
 * writing a temp file and renaming it over the old one; on a file system keeping whole seconds (ext3, many
 * NFS servers) a store within the second of the last one leaves the mtime as it was, but not the inode.
 */
function sameTop(now: FileInfo, mtime: number, id: string): boolean {
  return now.mtime === mtime && now.id === id
}
