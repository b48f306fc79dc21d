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
const block = Buffer.alloc(16)

/** A new jti made in `second` (seconds since the epoch). */
export function newJti(second = Math.floor(Date.now() / 1000)): string {
  if (offset === POOL.length) { randomFillSync(POOL); offset = 0 }
  block.writeUIntBE(second, 0, 5)
  POOL.copy(block, 5, offset, offset + 11)
  offset += 11
  return encrypt.update(block, undefined, 'hex')
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
