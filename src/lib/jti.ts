import { createCipheriv, createDecipheriv, hash, randomFillSync } from 'node:crypto'

/**
 * Token ids (`jti`): 16 bytes as 32 lowercase hex characters, the shape condor_token_create gives them,
 * that also tell the second they were made in.
 *
 * The 16 bytes are the second (5 bytes, big-endian) and 11 random bytes, put through AES-128 as one
 * block. AES is a permutation, so two ids are equal only if second and random bytes both are (88 random
 * bits per second), and the result is as uniform as random bytes to anyone who looks. The key is not a
 * secret and needs no storing: the second is the token's `iat` anyway. It only has to be the same in every
 * process and release, so that any of them can read the second back.
 *
 * Why: the SQLite audit store finds a record by jti through its time index (the second) instead of an
 * index of its own. A random jti, indexed, cost the writer one B-tree page per record; held in memory,
 * 11-21 bytes per record for as long as the log keeps it (docs/audit.md).
 */
const KEY = hash('sha256', 'condor-token-broker jti v1', 'buffer').subarray(0, 16)

// One ECB context each way, reused: with padding off, every update() maps one block to one block
// (creating a context per id cost more than the rest of it).
const encrypt = createCipheriv('aes-128-ecb', KEY, null).setAutoPadding(false)
const decrypt = createDecipheriv('aes-128-ecb', KEY, null).setAutoPadding(false)

// One CSPRNG call per 256 ids instead of one per id (randomBytes costs ~5 µs), the way Node caches
// entropy for randomUUID. Each byte is handed out once.
const POOL = Buffer.alloc(11 * 256)
let offset = POOL.length

// Ids are encrypted BATCH at a time for one second: one update() per id cost ~1.2 µs, mostly the call
// itself, against ~0.25 µs for an id taken from a batch (ECB encrypts each block on its own, so a batch's
// ids are exactly the ids one update() each would give). A batch left when the second changes is
// dropped, never handed out: its random bytes were drawn for it alone.
const BATCH = 16
const plain = Buffer.alloc(16 * BATCH)
let batch = Buffer.alloc(0)
let batchSecond = -1
let next = BATCH

/** A new jti made in `second` (seconds since the epoch). */
export function newJti(second = Math.floor(Date.now() / 1000)): string {
  if (next === BATCH || second !== batchSecond) {
    for (let i = 0; i < BATCH; i++) {
      if (offset === POOL.length) { randomFillSync(POOL); offset = 0 }
      plain.writeUIntBE(second, i * 16, 5)
      POOL.copy(plain, i * 16 + 5, offset, offset + 11)
      offset += 11
    }
    batch = encrypt.update(plain)
    batchSecond = second
    next = 0
  }
  const at = 16 * next++
  return batch.toString('hex', at, at + 16)
}

const HEX32 = /^[0-9a-f]{32}$/

/**
 * The second a jti made by newJti() was made in; for any other 32-hex string, some number that means
 * nothing (callers check it against what they know), and undefined for anything else.
 */
export function jtiSecond(jti: string): number | undefined {
  if (jti.length !== 32 || !HEX32.test(jti)) return undefined
  return decrypt.update(Buffer.from(jti, 'hex')).readUIntBE(0, 5)
}
