import type { MacVerdict, StoredRow } from './chain.ts'

/**
 * The audit seam. Every issuance, denial, renewal, revocation, key rotation and policy reload is one
 * event. Implementations must be append-only and hash-chained; `record` resolves only once
 * the event is durably committed, so callers can fail closed (Vault's rule: no response without its
 * audit record).
 */
export type AuditEventType =
  | 'token.issued'
  | 'token.denied'
  /** Unauthenticated refusals, counted in memory and written now and then as one record (refusal_tally.ts). */
  | 'token.denied.aggregate'
  | 'token.renewed'
  | 'token.revoked'
  /** A revocation lifted before its `until` (`detail.lift`: its id and, since they were added, kind and value), in the same transaction as the table change. */
  | 'token.unrevoked'
  | 'key.rotated'
  /** A running broker took up its keys from disk (SIGHUP after `keys rotate`), or refused to. */
  | 'key.reloaded'
  | 'policy.reloaded'
  | 'audit.checkpoint'
  /** The first record a broker wrote with a MAC: `detail.macFrom` is its own seq (record_mac.ts). */
  | 'audit.macs_started'
  /** A host certificate from the pool CA; `detail.serial` names it, `exp` is its notAfter (src/ca). */
  | 'certificate.issued'
  | 'certificate.denied'
  /** A pool CA serial put on the CRL; `exp` is the certificate's notAfter. */
  | 'certificate.revoked'
  /** A user's job credential registered (or re-registered), its IAM refresh token rotated, or revoked. No secret in them. */
  | 'credential.registered'
  | 'credential.rotated'
  | 'credential.revoked'

export interface AuditEvent {
  type: AuditEventType
  /** Epoch seconds; set by the caller from its Clock. */
  time: number
  requestId?: string
  /** Who asked: the verified IAM caller, or 'cli'/'admin' for local operations. */
  caller?: { iss?: string; sub?: string; client_id?: string; groups?: string[] }
  clientAddress?: string
  role?: string
  /** 'idtoken' | 'scitoken' | 'access_token' */
  tokenKind?: string
  /** The issued token's `sub`, `jti`, scopes, audience and `exp`. */
  issuedSub?: string
  jti?: string
  scopes?: string[]
  audience?: string[]
  exp?: number
  /** SHA-256 of the issued token (hex); never the token itself. */
  tokenSha256?: string
  policyRule?: string
  decision?: 'allow' | 'deny'
  reason?: string
  /** The site the token was issued for (`ctb_site` claim); filter and revoke-by-site key. */
  site?: string
  /** Free-form extra detail (e.g. site, host, revocation selector); must hold no secrets. */
  detail?: Record<string, unknown>
}

export interface AuditLog {
  /** Resolves after the event is committed; rejects if it could not be. */
  record(event: AuditEvent): Promise<void>
}

/**
 * One committed record: the event plus its place in the hash chain. `hash` is
 * sha256(`${seq}\n${prevHash}\n${body}`) where `body` is the event's canonical JSON (src/audit/chain.ts).
 */
export interface AuditRecord {
  /** 1, 2, 3, … without gaps; assigned at commit under the chain-head lock. */
  seq: number
  event: AuditEvent
  prevHash: string
  hash: string
  /**
   * Set when the stored body is no event (edited by hand, or corrupted): why, and the body as stored. `event`
   * then holds only what the row's indexed columns say (copies outside the hash), and the record does not verify.
   */
  unreadable?: { reason: string; body: string }
}

/** Filters for `GET /v1/audit` and `audit list`; all optional, combined with AND. Newest first. */
export interface AuditQuery {
  /** Epoch seconds, inclusive. */
  from?: number
  /** Epoch seconds, inclusive. */
  to?: number
  /** The caller's IAM `sub`. */
  caller?: string
  /** The issued token's `sub`. */
  issuedSub?: string
  role?: string
  jti?: string
  decision?: 'allow' | 'deny'
  type?: AuditEventType
  site?: string
  /** The request id the broker gave the request (X-Request-Id). No index: narrow with from/to on a large log. */
  requestId?: string
  /** Page size, 1..1000. */
  limit: number
  /** Opaque cursor from the previous page's `nextCursor`. */
  cursor?: string
}

export interface AuditPage {
  records: AuditRecord[]
  /** Present when more records match. */
  nextCursor?: string
}

/** Outcome of checking the whole chain; `broken` names the first record that fails and why. */
export type ChainVerification =
  /** `macFrom`: where MACs began (records before it predate them), when the records checked tell. */
  | { ok: true; records: number; head: { seq: number; hash: string }; firstSeq: number; macFrom?: number }
  | { ok: false; records: number; broken: { seq: number; reason: string } }

export interface PruneResult {
  /** Records removed (0 when nothing was older than the cut-off). */
  pruned: number
  /** The checkpoint record appended, carrying the hash of the last pruned record (the last chunk's). */
  checkpointSeq?: number
  /** How many chunks, each a transaction with its checkpoint, when more than one (retention's PRUNE_CHUNK). */
  chunks?: number
}

/** A full audit backend: SQLite, PostgreSQL or memory, all passing test/integration/audit_log.contract.ts. */
export interface AuditStore extends AuditLog {
  query(q: AuditQuery): Promise<AuditPage>
  /** Records in chain order from `fromSeq` (inclusive), for export and verification. */
  scan(fromSeq?: number): AsyncIterable<AuditRecord>
  /**
   * The rows as stored, indexed columns and body text included, in chain order from `fromSeq`: for checks
   * that must see what searches select by (the console's record page), not only the hashed body.
   */
  scanStored(fromSeq?: number): AsyncIterable<StoredRow>
  /** What one stored row's MAC says, judged with its predecessor (`previous`, undefined when pruned) under the store's key. */
  macVerdict(row: StoredRow, previous: StoredRow | undefined): MacVerdict
  verify(): Promise<ChainVerification>
  /**
   * Removes records older than `before` (epoch seconds) and appends a checkpoint; see chain.ts. `signal`
   * abandons it (rejecting with the signal's reason) while it is still reading the records to remove, before
   * anything is written; after that it completes.
   */
  prune(before: number, now: number, options?: { signal?: AbortSignal }): Promise<PruneResult>
  close(): Promise<void>
}
