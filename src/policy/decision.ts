import type { VerifiedSubject } from '../iam/subject.ts'

/** What the broker can hand out for one role. */
export type TokenKind = 'idtoken' | 'scitoken' | 'access_token'

/** One issuance request as the policy sees it: who asks, and what for. No HTTP here. */
export interface DecisionRequest {
  subject: VerifiedSubject
  role: string
  /** Absent: the role's default kind. */
  tokenKind?: TokenKind
  audience: string[]
  /**
   * One scope per entry, as every edge splits the `scope` parameter (RFC 6749 §3.3). Absent or empty: the
   * role's full allowed set. Present: must be a subset, else invalid_scope.
   */
  scopes?: string[]
  host?: string
  /** Seconds; absent: the role's default. Above the role's max: invalid_target unless the rule says "up to". */
  lifetime?: number
  /**
   * Values for identity templates the request carries (e.g. slurm job id). `site` is the exception: it is
   * only the caller's claim to one of the sites the grant binds, checked, never used as given.
   */
  params?: Record<string, string>
}

export type Decision =
  | {
      allow: true
      /** Id of the rule that allowed it, for audit and `policy explain`. */
      ruleId: string
      role: string
      tokenKind: TokenKind
      /** The issued token's `sub`, from the rule's identity template. */
      identity: string
      /** For idtoken: HTCondor levels (READ, ...); for scitoken/access_token: scope strings. */
      scopes: string[]
      audience: string[]
      lifetime: number
      profile?: 'wlcg' | 'scitokens2'
      /**
       * Fresh 32-hex id chosen by `decide`; `{jti8}` in the identity is its first 8 digits. Issuance
       * should use it as the token's `jti` so the identity and the audit record line up.
       */
      jti?: string
      /** The request's `host`, lower-cased, when the rule constrains hosts (for audit). */
      host?: string
      /**
       * The site the grant binds (one of its `sites:`), never a caller's word: the issued token's `ctb_site`
       * and the audit record's site come from here only. Absent when the grant binds no site.
       */
      site?: string
      /** What an `up_to` rule trimmed; the response must then state the granted `scope` (RFC 6749 §5.1). */
      trimmed?: ('scope' | 'lifetime')[]
    }
  | {
      allow: false
      ruleId?: string
      /** OAuth error the edge should send. */
      error: 'invalid_scope' | 'invalid_target' | 'unauthorized_client' | 'access_denied' | 'invalid_request'
      /** Safe to show the caller and to audit. */
      reason: string
    }
