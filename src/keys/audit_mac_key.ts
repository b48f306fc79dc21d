import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Config } from '../config.ts'
import { OperatorError } from '../errors.ts'
import { AUDIT_MAC_KEY_BYTES, auditMacKey, type AuditMacKey } from '../audit/record_mac.ts'
import { readSecretFile, writeSecretFileAtomic } from '../lib/secure_file.ts'

/** Where the audit MAC key lives: audit.mac_key_file, else <data_dir>/keys/audit_mac.key (beside the signing keys). */
export function auditMacKeyFile(config: Config): string {
  return config.audit.mac_key_file ?? join(config.data_dir, 'keys', 'audit_mac.key')
}

/**
 * Creates the audit MAC key file (O_EXCL, 0600) unless it exists; returns whether it did. `keys init` does
 * this in production; outside production `serve` and the CLI do it on first use.
 */
export function ensureAuditMacKeyFile(file: string): boolean {
  if (existsSync(file)) return false
  try {
    writeSecretFileAtomic(file, `${randomBytes(AUDIT_MAC_KEY_BYTES).toString('base64')}\n`, { exclusive: true })
  } catch (err) {
    // Another process (serve and a CLI starting together) created it first: theirs is the key.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  return true
}

/** Reads the key: 32 bytes as base64 (or 64 hex digits), refused when group or other may read the file. */
export function readAuditMacKey(file: string): AuditMacKey {
  if (!existsSync(file)) {
    throw new OperatorError('EAUDITMACKEY', `no audit MAC key at ${file}: run "condor-token-broker keys init" on the first broker and copy the file (mode 0600) to every replica and every host that runs the CLI`)
  }
  const text = readSecretFile(file).toString('utf8').trim()
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : /^[A-Za-z0-9+/]{43}=$/.test(text) ? Buffer.from(text, 'base64') : undefined
  if (key?.length !== AUDIT_MAC_KEY_BYTES) throw new OperatorError('EAUDITMACKEY', `${file}: an audit MAC key is ${AUDIT_MAC_KEY_BYTES} bytes, written as base64 or 64 hex digits`)
  return auditMacKey(key)
}
