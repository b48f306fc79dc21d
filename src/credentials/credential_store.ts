import type { AuditEvent } from '../audit/audit_log.ts'
import type { SealedSecret } from './credential_cipher.ts'

/** How the broker obtains a job's token for a provider: refresh at IAM, or mint a SciToken/WLCG token itself. */
export type CredentialKind = 'iam' | 'scitoken'

/** One registered user credential (a row of `user_credentials`). Holds no secret in clear. */
export interface StoredCredential {
  user: string
  /** The credential's name: its provider, or `<provider>_<handle>` (each handle is a credential of its own). */
  provider: string
  kind: CredentialKind
  /** The IAM issuer and `sub` of the user who registered it. */
  iss: string
  sub: string
  /** The broker's client at that IAM (kind iam). */
  clientId?: string
  /** Scopes and audience the credential was registered for (decided by policy, granted by IAM). */
  scopes: string[]
  audience: string[]
  /** The sealed IAM refresh token (kind iam); absent once revoked. */
  sealed?: SealedSecret
  /** The registering token's non-secret claims (JSON), for policy decisions at mint time (kind scitoken). */
  subjectJson: string
  /** SHA-256 (hex) of the Vault-compatible bearer handed out in a vault-mode `.top`; the bearer itself is never stored. */
  vaultTokenSha256?: string
  createdAt: number
  rotatedAt?: number
  revoked: boolean
  revokedAt?: number
  revokedBy?: string
  /** IAM's last confirmation of the user (kind scitoken, iam_recheck.ts): when, and the groups it stated. */
  confirmation?: StoredConfirmation
}

/** An IAM confirmation as the row keeps it, for every replica and the next start to decide on. */
export interface StoredConfirmation {
  /** Epoch seconds. */
  at: number
  /** The groups IAM stated, and the claim it stated them in (none: it stated no groups). */
  groups: string[]
  claim: 'wlcg.groups' | 'groups' | null
}

/** A confirmation to store: only on the registration it was made for (nextConfirmation says how it merges). */
export interface CredentialConfirmation {
  user: string
  provider: string
  /** The registration: its time and the IAM user who made it. */
  createdAt: number
  iss: string
  sub: string
  confirmation: StoredConfirmation
  /** The writing process's clock (epoch seconds), to recognise a stored confirmation dated in its future. */
  now: number
}

/** How far in a process's future a stored confirmation may be dated (clock skew between replicas) before it is distrusted. */
export const CONFIRMATION_SKEW_SECONDS = 60

/**
 * What a credential row's confirmation becomes when `c` arrives, or undefined to leave it. Only onto the
 * registration it was made for (time, issuer and subject), never onto a revoked credential. A later one
 * replaces it; an earlier one is dropped (a slower replica's); one of the same second keeps only the
 * groups both state, so an answer without a group IAM has just dropped cannot win a race against the one
 * that knows; a stored one dated past the writer's clock by more than the skew allowance is replaced.
 */
export function nextConfirmation(row: Pick<StoredCredential, 'createdAt' | 'iss' | 'sub' | 'revoked' | 'confirmation'> | undefined, c: CredentialConfirmation): StoredConfirmation | undefined {
  if (!row || row.revoked || row.createdAt !== c.createdAt || row.iss !== c.iss || row.sub !== c.sub) return undefined
  const cur = row.confirmation
  const next = c.confirmation
  if (!cur || next.at > cur.at || cur.at > c.now + CONFIRMATION_SKEW_SECONDS) return next
  if (next.at < cur.at) return undefined
  const groups = cur.groups.filter((g) => next.groups.includes(g))
  return groups.length === cur.groups.length ? undefined : { at: cur.at, groups, claim: cur.claim ?? next.claim }
}

/** One change to a credential, committed in the same transaction as its audit record. */
export type CredentialWrite =
  /**
   * Creates or replaces the credential (a re-registration starts afresh, unrevoked). With `replacing`, only
   * while the row is still the one the registration read (compare-and-swap): the nonce of the sealed token
   * it held, or null for no row or a row holding no token. Without it, unconditional.
   */
  | { action: 'register'; credential: StoredCredential; replacing?: string | null }
  /** A rotated refresh token, only if the row still holds `previousNonce` and is not revoked (compare-and-swap). */
  | { action: 'rotate'; user: string; provider: string; previousNonce: string; sealed: SealedSecret; rotatedAt: number }
  /**
   * Marks the credential revoked and drops its ciphertext, if it exists and is not revoked yet; with
   * `ifNonce`, only while the row still holds that sealed token (IAM refused that one, not whatever
   * registration or rotation has replaced it since).
   */
  | { action: 'revoke'; user: string; provider: string; revokedAt: number; revokedBy: string; ifNonce?: string }

/** The credential side of the broker store (SQLite, PostgreSQL, memory). */
export interface CredentialStore {
  readCredential(user: string, provider: string): Promise<StoredCredential | undefined>
  /** The credential a Vault-compatible bearer belongs to (by its SHA-256). */
  credentialByVaultToken(sha256: string): Promise<StoredCredential | undefined>
  listCredentials(): Promise<StoredCredential[]>
  /** How many unrevoked credentials `user` holds, not counting the one named `except`. */
  countLiveCredentials(user: string, except: string): Promise<number>
  /** Applies the write and appends `event` in one transaction; false (and no record) when a rotate or revoke found nothing to change. */
  writeCredential(write: CredentialWrite, event: AuditEvent): Promise<boolean>
  /**
   * Keeps IAM's confirmation on the row; false when the registration is gone, revoked, or holds a newer
   * one. Not an audit record of its own: each token minted under it records it (`detail.iamCheck`).
   */
  confirmCredential(c: CredentialConfirmation): Promise<boolean>
}

/** A `user_credentials` row as either SQL backend returns it. */
export interface CredentialRow {
  user_name: string
  provider: string
  kind: string
  iss: string
  sub: string
  client_id: string | null
  scopes: string
  audience: string
  ciphertext: string | null
  nonce: string | null
  key_id: string | null
  subject_json: string
  vault_token_sha256: string | null
  created_at: number | string
  rotated_at: number | string | null
  revoked: number | boolean
  revoked_at: number | string | null
  revoked_by: string | null
  confirmed_at?: number | string | null
  confirmed_groups?: string | null
}

const split = (s: string) => s.split(' ').filter((x) => x.length > 0)

export function fromCredentialRow(r: CredentialRow): StoredCredential {
  return {
    user: r.user_name, provider: r.provider, kind: r.kind as CredentialKind, iss: r.iss, sub: r.sub,
    ...(r.client_id !== null ? { clientId: r.client_id } : {}),
    scopes: split(r.scopes), audience: split(r.audience),
    ...(r.ciphertext !== null && r.nonce !== null && r.key_id !== null ? { sealed: { ciphertext: r.ciphertext, nonce: r.nonce, keyId: r.key_id } } : {}),
    subjectJson: r.subject_json,
    ...(r.vault_token_sha256 !== null ? { vaultTokenSha256: r.vault_token_sha256 } : {}),
    createdAt: Number(r.created_at),
    ...(r.rotated_at !== null ? { rotatedAt: Number(r.rotated_at) } : {}),
    revoked: revokedOf(r),
    ...(r.revoked_at !== null ? { revokedAt: Number(r.revoked_at) } : {}),
    ...(r.revoked_by !== null ? { revokedBy: r.revoked_by } : {}),
    ...confirmationOfRow(r),
  }
}

/**
 * The row's confirmation, if it is one: anything else there (a row edited by hand) counts as none, so the
 * next mint asks IAM (fail closed) instead of failing every read of the table.
 */
function confirmationOfRow(r: CredentialRow): { confirmation?: StoredConfirmation } {
  if (r.confirmed_at === null || r.confirmed_at === undefined || !r.confirmed_groups) return {}
  const at = Number(r.confirmed_at)
  let g: unknown
  try { g = JSON.parse(r.confirmed_groups) } catch { return {} }
  if (!Number.isSafeInteger(at) || typeof g !== 'object' || g === null) return {}
  const { groups, claim } = g as { groups?: unknown; claim?: unknown }
  if (!Array.isArray(groups) || !groups.every((x) => typeof x === 'string')) return {}
  if (claim !== null && claim !== 'wlcg.groups' && claim !== 'groups') return {}
  return { confirmation: { at, groups: groups as string[], claim } }
}

/** The registration columns nextConfirmation reads, for the SQL backends' SELECT. */
export const CONFIRMATION_READ_COLUMNS = 'created_at, iss, sub, revoked, confirmed_at, confirmed_groups'

/** A row of CONFIRMATION_READ_COLUMNS as nextConfirmation takes it. */
export function confirmationRow(r: Pick<CredentialRow, 'created_at' | 'iss' | 'sub' | 'revoked' | 'confirmed_at' | 'confirmed_groups'>): Pick<StoredCredential, 'createdAt' | 'iss' | 'sub' | 'revoked' | 'confirmation'> {
  return { createdAt: Number(r.created_at), iss: r.iss, sub: r.sub, revoked: revokedOf(r), ...confirmationOfRow(r as CredentialRow) }
}

/** `revoked` as either backend returns it: an INT in both schemas, a boolean from drivers that map it. */
function revokedOf(r: Pick<CredentialRow, 'revoked'>): boolean {
  return r.revoked === true || Number(r.revoked) === 1
}

/** The UPDATE that writes a confirmation (placeholders: at, groups JSON, user, provider). */
export function confirmSql(placeholder: (i: number) => string): string {
  const p = placeholder
  return `UPDATE user_credentials SET confirmed_at = ${p(1)}, confirmed_groups = ${p(2)} WHERE user_name = ${p(3)} AND provider = ${p(4)}`
}

export function confirmationValues(user: string, provider: string, c: StoredConfirmation): Array<string | number> {
  return [c.at, JSON.stringify({ groups: c.groups, claim: c.claim }), user, provider]
}

/** The columns of IAM's last confirmation on the row (a schema step of both SQL backends adds them). */
export const CREDENTIAL_CONFIRMATION_COLUMNS: ReadonlyArray<readonly [name: string, type: string]> = [['confirmed_at', 'BIGINT'], ['confirmed_groups', 'TEXT']]

/** Column values of a registration, in CREDENTIAL_COLUMNS order. */
export function credentialValues(c: StoredCredential): Array<string | number | null> {
  return [
    c.user, c.provider, c.kind, c.iss, c.sub, c.clientId ?? null, c.scopes.join(' '), c.audience.join(' '),
    c.sealed?.ciphertext ?? null, c.sealed?.nonce ?? null, c.sealed?.keyId ?? null, c.subjectJson,
    c.vaultTokenSha256 ?? null, c.createdAt,
  ]
}

export const CREDENTIAL_COLUMNS = ['user_name', 'provider', 'kind', 'iss', 'sub', 'client_id', 'scopes', 'audience', 'ciphertext', 'nonce', 'key_id', 'subject_json', 'vault_token_sha256', 'created_at'] as const

/** Schema step shared by both SQL backends (BIGINT is an integer in SQLite too). */
export const CREDENTIALS_MIGRATION = `CREATE TABLE IF NOT EXISTS user_credentials (
     user_name TEXT NOT NULL, provider TEXT NOT NULL, kind TEXT NOT NULL, iss TEXT NOT NULL, sub TEXT NOT NULL,
     client_id TEXT, scopes TEXT NOT NULL, audience TEXT NOT NULL,
     ciphertext TEXT, nonce TEXT, key_id TEXT, subject_json TEXT NOT NULL, vault_token_sha256 TEXT,
     created_at BIGINT NOT NULL, rotated_at BIGINT, revoked INT NOT NULL DEFAULT 0, revoked_at BIGINT, revoked_by TEXT,
     PRIMARY KEY (user_name, provider));
   CREATE UNIQUE INDEX IF NOT EXISTS user_credentials_vault ON user_credentials (vault_token_sha256);`

/**
 * The upsert of a `register` write and its values, for both backends. With `replacing`, the update of an
 * existing row happens only while it holds that nonce (null: none), so two registrations that read the
 * same row cannot both replace it; `IS NOT DISTINCT FROM` compares NULL as a value (SQLite 3.39+, PostgreSQL).
 */
export function registerSql(w: Extract<CredentialWrite, { action: 'register' }>, placeholder: (i: number) => string): { sql: string; values: Array<string | number | null> } {
  const cols = CREDENTIAL_COLUMNS.join(', ')
  const vals = CREDENTIAL_COLUMNS.map((_, i) => placeholder(i + 1)).join(', ')
  const updates = CREDENTIAL_COLUMNS.slice(2).map((c) => `${c} = excluded.${c}`).join(', ')
  const values = credentialValues(w.credential)
  const guard = w.replacing !== undefined ? ` WHERE user_credentials.nonce IS NOT DISTINCT FROM ${placeholder(values.length + 1)}` : ''
  if (w.replacing !== undefined) values.push(w.replacing)
  return {
    sql: `INSERT INTO user_credentials (${cols}) VALUES (${vals}) ON CONFLICT (user_name, provider) DO UPDATE SET ${updates}, rotated_at = NULL, revoked = 0, revoked_at = NULL, revoked_by = NULL, confirmed_at = NULL, confirmed_groups = NULL${guard}`,
    values,
  }
}

/**
 * The UPDATE of a `revoke` write and its values, for both backends: marks the row revoked and drops its
 * ciphertext while it is live, and with `ifNonce` only while it still holds that sealed token.
 */
export function revokeSql(w: Extract<CredentialWrite, { action: 'revoke' }>, placeholder: (i: number) => string): { sql: string; values: Array<string | number> } {
  const values: Array<string | number> = [w.revokedAt, w.revokedBy, w.user, w.provider]
  if (w.ifNonce !== undefined) values.push(w.ifNonce)
  const sql = `UPDATE user_credentials SET revoked = 1, revoked_at = ${placeholder(1)}, revoked_by = ${placeholder(2)}, ciphertext = NULL, nonce = NULL, key_id = NULL WHERE user_name = ${placeholder(3)} AND provider = ${placeholder(4)} AND revoked = 0${w.ifNonce !== undefined ? ` AND nonce = ${placeholder(5)}` : ''}`
  return { sql, values }
}
