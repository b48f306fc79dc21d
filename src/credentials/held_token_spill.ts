import { createHash } from 'node:crypto'
import { closeSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync, type Stats } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import type { Logger } from '../lib/logger.ts'
import { replaceSecretFileDurably } from '../lib/secure_file.ts'

/**
 * A rotated IAM refresh token the store has not taken yet, as it is kept on local disk meanwhile. The token
 * is sealed exactly as the database row would hold it (AES-256-GCM under the credential key, bound to
 * user, provider, scopes and audience), so the file holds nothing the database would not; with it go the
 * row's nonce the write replaces (the compare-and-swap value) and the registration it belongs to.
 */
export interface SpilledToken {
  user: string
  provider: string
  scopes: string[]
  audience: string[]
  caller: { iss: string; sub: string }
  /** The registration (created_at) this rotation belongs to. */
  createdAt: number
  /** The nonce of the row's token this one replaces. */
  previousNonce: string
  sealed: { ciphertext: string; nonce: string; keyId: string }
  rotatedAt: number
}

const SpilledTokenSchema = z.object({
  user: z.string(),
  provider: z.string(),
  scopes: z.array(z.string()),
  audience: z.array(z.string()),
  caller: z.object({ iss: z.string(), sub: z.string() }),
  createdAt: z.number().int(),
  previousNonce: z.string(),
  sealed: z.object({ ciphertext: z.string(), nonce: z.string(), keyId: z.string() }),
  rotatedAt: z.number().int(),
}).strict()

const LOCK = '.lock'

/**
 * Why a spill: IAM retires a refresh token as it rotates it, so a rotated token held only in memory while
 * the store refuses its write (an outage) is lost by a restart in that outage, and the credential with it
 * (IAM refuses the row's older token and the user must register again). One file per credential, named by
 * a digest of the credential's key (no user name in a file name), 0600 in a 0700 directory, replaced
 * atomically; written only when a store write fails, removed once the token is stored or dropped.
 *
 * One process at a time: a second broker taking up a token the first still holds could store it after
 * the first had spent it at IAM (a retired token over the live one). `claim` takes the directory with a
 * lock file naming this process; a broker that cannot claim it keeps held tokens in memory only.
 *
 * `save` and `remove` run while the store is failing, on the path of the request that rotated the token:
 * they are asynchronous (a synchronous fsync would stop every request of the broker for as long as the disk
 * takes, and an outage is when it may be slowest). A credential's saves and removes run one after another
 * in the order asked, so a removal asked after a save is never undone by it. Start-up's `claim` and
 * `load` stay synchronous: nothing is served yet.
 */
export class HeldTokenSpill {
  readonly #dir: string
  readonly #log: Logger
  #claimed = false
  /** Per credential key: the end of its last save or remove; the next one starts after it. */
  readonly #ops = new Map<string, Promise<void>>()

  constructor(dir: string, log: Logger) {
    this.#dir = dir
    this.#log = log
  }

  /** The file of one credential: a digest of its key, so a file's name cannot be chosen by a user name. */
  fileOf(key: string): string {
    return join(this.#dir, `${createHash('sha256').update(key).digest('hex')}.json`)
  }

  /**
   * Takes the directory for this process: creates it (0700) if need be, refuses one group or other can
   * reach, and takes the lock unless a live process holds it. False (logged) when the spill must stay off.
   */
  claim(): boolean {
    try {
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 })
      const st = lstatSync(this.#dir)
      if (!st.isDirectory() || !ownerOnly(st)) {
        this.#log.error('not keeping held refresh tokens on disk: their directory must be a directory of ours with mode 0700', { dir: this.#dir, mode: (st.mode & 0o777).toString(8) })
        return false
      }
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          const fd = openSync(join(this.#dir, LOCK), 'wx', 0o600)
          writeSync(fd, `${process.pid}\n`)
          closeSync(fd)
          this.#claimed = true
          return true
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
          const holder = Number.parseInt(readFileSync(join(this.#dir, LOCK), 'utf8'), 10)
          if (Number.isSafeInteger(holder) && holder !== process.pid && alive(holder)) {
            this.#log.warn('another broker process holds the directory of held refresh tokens; this one keeps them in memory only', { dir: this.#dir, pid: holder })
            return false
          }
          // Left by a process that is gone (or by this one, before a restart in the same process): stale.
          rmSync(join(this.#dir, LOCK), { force: true })
        }
      }
      return false
    } catch (err) {
      this.#log.error('cannot claim the directory of held refresh tokens; keeping them in memory only', { dir: this.#dir, err: err instanceof Error ? err : undefined })
      return false
    }
  }

  /** Gives the directory up (an orderly shutdown); what is still spilled stays for the next start. */
  release(): void {
    if (!this.#claimed) return
    this.#claimed = false
    rmSync(join(this.#dir, LOCK), { force: true })
  }

  /**
   * Keeps it on disk; resolves true once the file is whole and synced (directory included), so a caller
   * that waits for it can promise a restart finds the token. A failure is logged, never thrown (false): the
   * token is still held in memory.
   */
  save(key: string, token: SpilledToken): Promise<boolean> {
    return this.#inOrder(key, async () => {
      try {
        await replaceSecretFileDurably(this.fileOf(key), `${JSON.stringify(token)}\n`)
        return true
      } catch (err) {
        this.#log.error('could not keep a held rotated refresh token on disk; a restart before its store write lands loses it', { user: token.user, provider: token.provider, dir: this.#dir, err: err instanceof Error ? err : undefined })
        return false
      }
    })
  }

  /** Removes the credential's file, after any save of it already asked for. Never throws. */
  remove(key: string): Promise<void> {
    return this.#inOrder(key, async () => {
      try {
        await rm(this.fileOf(key), { force: true })
      } catch (err) {
        this.#log.warn('could not remove a spilled refresh token file; it is ignored once the row has moved on', { dir: this.#dir, err: err instanceof Error ? err : undefined })
      }
    })
  }

  /** Resolves once every save and remove asked for so far has finished: shutdown waits for it. */
  async settled(): Promise<void> {
    // Bounded: an operation asked for while waiting is waited for too, up to a few rounds.
    for (let round = 0; round < 10 && this.#ops.size > 0; round++) await Promise.all(this.#ops.values())
  }

  /** Runs `op` after the key's earlier operations (which never reject: save and remove catch their own). */
  #inOrder<T>(key: string, op: () => Promise<T>): Promise<T> {
    const result = (this.#ops.get(key) ?? Promise.resolve()).then(op)
    const done = result.then(() => undefined, () => undefined)
    this.#ops.set(key, done)
    void done.then(() => { if (this.#ops.get(key) === done) this.#ops.delete(key) })
    return result
  }

  /**
   * Everything an earlier run spilled. Only regular files of ours with no group or other access are read
   * (a symlink or a FIFO planted there is not followed or opened); a file that is not a spilled token is
   * logged by name, never by content, and left for the operator.
   */
  load(): SpilledToken[] {
    let names: string[]
    try {
      names = readdirSync(this.#dir).filter((n) => /^[0-9a-f]{64}\.json$/.test(n))
    } catch (err) {
      this.#log.error('cannot read the directory of spilled refresh tokens', { dir: this.#dir, err: err instanceof Error ? err : undefined })
      return []
    }
    const out: SpilledToken[] = []
    for (const name of names) {
      const file = join(this.#dir, name)
      try {
        const st = lstatSync(file)
        if (!st.isFile() || !ownerOnly(st)) throw new Error('not a regular file of ours with mode 0600')
        let parsed: unknown
        try { parsed = JSON.parse(readFileSync(file, 'utf8')) } catch { throw new Error('not JSON') }
        const token = SpilledTokenSchema.safeParse(parsed)
        if (!token.success) throw new Error('not a spilled refresh token')
        if (this.fileOf(`${token.data.user}\n${token.data.provider}`) !== file) throw new Error('its name is not its credential\'s')
        out.push(token.data)
      } catch (err) {
        this.#log.error('ignoring a spilled refresh token file', { file, reason: (err as Error).message })
      }
    }
    return out
  }
}

/** Ours, and nobody else's to read or write (checked on lstat: a symlink is not followed). */
function ownerOnly(st: Stats): boolean {
  return (st.mode & 0o077) === 0 && (!process.getuid || st.uid === process.getuid())
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
