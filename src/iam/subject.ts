/**
 * A verified caller: the claims of an IAM access token that passed signature, issuer, audience and time
 * checks (or introspection). Policies match on these fields only.
 */
export interface VerifiedSubject {
  /** Exact `iss` string, trailing slash included (docs/iam-and-wlcg.md §1.2). */
  iss: string
  sub: string
  client_id?: string
  /** `wlcg.groups` or IAM-profile `groups`, as given. */
  groups: string[]
  /** Space-split `scope`. */
  scopes: string[]
  exp: number
  jti?: string
  preferred_username?: string
  /** All claims, for identity templates; never logged whole. */
  claims: Readonly<Record<string, unknown>>
}

/** Verifies an inbound IAM access token; throws InvalidRequest/InvalidGrant on a bad one, TemporarilyUnavailable when IAM cannot be reached. */
export interface SubjectTokenVerifier {
  verify(token: string): Promise<VerifiedSubject>
}
