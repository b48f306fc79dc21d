/**
 * The audit seam. Every issuance, denial, renewal, revocation, key rotation and policy reload is one
 * event. Implementations must be append-only and hash-chained (issue #3); `record` resolves only once
 * the event is durably committed, so callers can fail closed (Vault's rule: no response without its
 * audit record).
 */
export type AuditEventType =
  | 'token.issued'
  | 'token.denied'
  | 'token.renewed'
  | 'token.revoked'
  | 'key.rotated'
  | 'policy.reloaded'
  | 'audit.checkpoint'

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
  /** Free-form extra detail (e.g. site, host, revocation selector); must hold no secrets. */
  detail?: Record<string, unknown>
}

export interface AuditLog {
  /** Resolves after the event is committed; rejects if it could not be. */
  record(event: AuditEvent): Promise<void>
}
