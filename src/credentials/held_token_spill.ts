import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod'
import type { Logger } from '../lib/logger.ts'
import { writeSecretFileAtomic } from '../lib/secure_file.ts'

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

/**
 * Why a spill: IAM retires a refresh token as it rotates it, so a rotated token held only in memory while
 * the store refuses its write (an outage) is lost by a restart in that outage, and the credential with it
 * (IAM refuses the row's older token and the user must register again). One file per credential, named by
 * a digest of the credential's key (no user name in a file name), 0600 in a 0700 directory, replaced
 * atomically; written only when a store write fails, removed once the token is stored or dropped.
 */
export class HeldTokenSpill {
  readonly #dir: string
  readonly #log: Logger

  constructor(dir: string, log: Logger) {
    this.#dir = dir
    this.#log = log
  }

  #file(key: string): string {
    return join(this.#dir, `${createHash('sha256').update(key).digest('hex')}.json`)
  }

  /** Keeps it on disk; a failure is logged, never thrown: the token is still held in memory. */
  save(key: string, token: SpilledToken): void {
    try {
      writeSecretFileAtomic(this.#file(key), `${JSON.stringify(token)}\n`)
    } catch (err) {
      this.#log.error('could not keep a held rotated refresh token on disk; a restart before its store write lands loses it', { user: token.user, provider: token.provider, dir: this.#dir, err: err instanceof Error ? err : undefined })
    }
  }

  remove(key: string): void {
    try {
      rmSync(this.#file(key), { force: true })
    } catch (err) {
      this.#log.warn('could not remove a spilled refresh token file; it is ignored once the row has moved on', { dir: this.#dir, err: err instanceof Error ? err : undefined })
    }
  }

  /** Everything spilled by an earlier run; unreadable or malformed files are logged and left for the operator. */
  load(): SpilledToken[] {
    let names: string[]
    try {
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 })
      names = readdirSync(this.#dir).filter((n) => /^[0-9a-f]{64}\.json$/.test(n))
    } catch (err) {
      this.#log.error('cannot read the directory of spilled refresh tokens', { dir: this.#dir, err: err instanceof Error ? err : undefined })
      return []
    }
    const out: SpilledToken[] = []
    for (const name of names) {
      try {
        out.push(SpilledTokenSchema.parse(JSON.parse(readFileSync(join(this.#dir, name), 'utf8'))))
      } catch (err) {
        this.#log.error('ignoring a spilled refresh token file that cannot be read', { file: join(this.#dir, name), err: err instanceof Error ? err : undefined })
      }
    }
    return out
  }
}
