import { hkdfSync, randomBytes } from 'node:crypto'
import { OperatorError } from '../errors.ts'

/** HTCondor's fixed scramble pad (condor_utils/store_cred.cpp): XOR with DE AD BE EF, repeating. */
const SCRAMBLE_PAD = [0xde, 0xad, 0xbe, 0xef] as const

/** Length HTCondor's collector uses when it creates POOL itself (docs/htcondor-tokens.md §1.1). */
export const CONDOR_KEY_BYTES = 64

/**
 * HTCondor's scramble; it is its own inverse, so the same function unscrambles.
 * @see docs/htcondor-tokens.md §1.2
 */
export function scramble(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(bytes.length)
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! ^ SCRAMBLE_PAD[i % 4]!
  return out
}

/** A fresh key as the collector would create it: 64 random bytes, returned already scrambled for the file. */
export function generateCondorKeyFile(): Buffer {
  return scramble(randomBytes(CONDOR_KEY_BYTES))
}

/**
 * Derives the 32-byte HS256 key HTCondor signs IDTOKENs with from a key file's raw (scrambled) bytes.
 * POOL (and the empty key id) use the unscrambled key concatenated with itself as IKM; named keys do not.
 * @see docs/htcondor-tokens.md §1.2 (condor_auth_passwd.cpp)
 */
export function deriveIdTokenKey(fileBytes: Uint8Array, kid: string): Buffer {
  const key = scramble(fileBytes)
  const ikm = kid === 'POOL' || kid === '' ? Buffer.concat([key, key]) : key
  return Buffer.from(hkdfSync('sha256', ikm, 'htcondor', 'master jwt', 32))
}

/** HTCondor's LOCAL_CONFIG_DIR_EXCLUDE_REGEXP default: files it ignores in passwords.d and tokens.d. */
export const CONDOR_EXCLUDED_NAME = /^\.|~$|^#|\.(sh|py|pl|rpmsave|rpmnew|dpkg-old|dpkg-dist|cfsaved)$/

/** Why `name` cannot be a key id (a usable file name that HTCondor would not skip), or undefined. */
export function keyNameProblem(name: string): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name) || CONDOR_EXCLUDED_NAME.test(name)) {
    return `invalid key name "${name}": use letters, digits, '.', '_' or '-' (HTCondor ignores names like .x, x~, x.sh)`
  }
  return undefined
}

/** A key id must be a usable file name that HTCondor would not skip. */
export function assertKeyName(name: string): void {
  const problem = keyNameProblem(name)
  if (problem) throw new OperatorError('EKEYNAME', problem)
}
