import { createHmac, hash, timingSafeEqual } from 'node:crypto'

/**
 * The key that MACs every audit record (docs/audit.md, "Record MACs"). A key of its own: the IDTOKEN
 * signing key rotates, and records MAC'd under a retired key would then no longer verify.
 */
export interface AuditMacKey {
  /** Names the key in each record's MAC, so a later rotation can keep old keys and pick one by id. */
  kid: string
  key: Buffer
}

/** Bytes of an audit MAC key: 256 bits, as HMAC-SHA256's block-sized keys need no more. */
export const AUDIT_MAC_KEY_BYTES = 32

/** The first record written with a MAC states where MACs begin (`detail.macFrom`, its own seq). */
export const MACS_STARTED = 'audit.macs_started'

/** A key id that names the key without revealing it: 16 hex digits of a one-way hash of it. */
export function auditMacKey(key: Buffer): AuditMacKey {
  if (key.length !== AUDIT_MAC_KEY_BYTES) throw new TypeError(`an audit MAC key is ${AUDIT_MAC_KEY_BYTES} bytes`)
  return { kid: hash('sha256', Buffer.concat([Buffer.from('condor-token-broker audit MAC key id\n'), key]), 'hex').slice(0, 16), key: Buffer.from(key) }
}

/**
 * `<kid>:<hex HMAC-SHA256 over the record's 32-byte hash>`. The hash already covers seq, prev_hash and
 * body, so the MAC ties the record to its place in the chain: copied onto another record, or left on a
 * record re-linked elsewhere, it no longer matches.
 */
export function recordMac(k: AuditMacKey, recordHash: string): string {
  return `${k.kid}:${createHmac('sha256', k.key).update(Buffer.from(recordHash, 'hex')).digest('hex')}`
}

/** Why a stored MAC does not vouch for the record with this hash, or undefined when it does. */
export function macProblem(k: AuditMacKey, recordHash: string, stored: string): string | undefined {
  const m = /^([0-9a-f]{16}):([0-9a-f]{64})$/.exec(stored)
  if (!m) return 'MAC is not well-formed (written outside the broker)'
  if (m[1] !== k.kid) return `MAC names key ${m[1]}, not the audit MAC key ${k.kid} (written outside the broker, or the key was replaced)`
  const want = Buffer.from(recordMac(k, recordHash).slice(17), 'hex')
  return timingSafeEqual(want, Buffer.from(m[2]!, 'hex')) ? undefined : 'MAC does not match the record (written outside the broker, or its MAC edited)'
}
