import { statSync } from 'node:fs'
import { isPreparedEntry, type KeyStore } from './key_store.ts'

/** What an operator needs to judge the keys: which sign, how old they are, and when retired ones leave the JWKS. */
export interface KeyStatus {
  scitoken: Array<{ kid: string; alg: string; created: number; ageSeconds: number; status: 'active' | 'next' | 'retired' | 'expired' | 'compromised'; retired?: number; publishUntil?: number }>
  condor: Array<{ name: string; signing: boolean; modified: number; ageSeconds: number; fingerprint: string }>
  /**
   * Rotation is an operator action (`keys rotate`, then SIGHUP), not a schedule: this is when the newest
   * retired SciToken key stops being published, the earliest a following rotation leaves a single key.
   */
  nextUnpublish?: number
}

/** Reads the key store's metadata (never key material beyond a short fingerprint) for display. */
export function keyStatus(store: Pick<KeyStore, 'readKeyring' | 'listCondorKeys'>, signingCondorKey: string, now: number): KeyStatus {
  const scitoken = store.readKeyring().map((k) => ({
    kid: k.kid, alg: k.alg, created: k.created, ageSeconds: Math.max(0, now - k.created),
    // Before the rest: a compromised entry also reads as retired and past its publish_until.
    status: k.compromised !== undefined ? 'compromised' as const : isPreparedEntry(k) ? 'next' as const : k.retired === undefined ? 'active' as const : (k.publish_until ?? 0) > now ? 'retired' as const : 'expired' as const,
    ...(k.retired !== undefined ? { retired: k.retired } : {}),
    ...(k.publish_until !== undefined ? { publishUntil: k.publish_until } : {}),
  }))
  const condor = store.listCondorKeys().map((k) => {
    const modified = Math.floor(statSync(k.path).mtimeMs / 1000)
    return { name: k.name, signing: k.name === signingCondorKey, modified, ageSeconds: Math.max(0, now - modified), fingerprint: k.fingerprint }
  })
  const pending = scitoken.filter((k) => k.status === 'retired').map((k) => k.publishUntil!).sort((a, b) => a - b)
  return { scitoken, condor, ...(pending.length > 0 ? { nextUnpublish: pending.at(-1)! } : {}) }
}
