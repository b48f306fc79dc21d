import type { AuditEvent } from '../audit/audit_log.ts'
import { INITIAL_GENERATION, type Revocation, type RevocationKind } from '../revocation/revocation.ts'
import { RevocationSnapshot } from '../revocation/revocation_checker.ts'

/**
 * Identity revocations (src/revocation) applied to host certificates, with the revocation module's own
 * matcher (RevocationSnapshot): a certificate's `certificate.issued` record is presented to it the way a
 * token's claims are. The record's fields and the kinds they answer to:
 *   caller {iss, sub, client_id}  `sub` (issuer-bound or not) and `client`: the requester is a caller (blockedCaller)
 *   site                          `site` (claim ctb_site)
 *   role                          `role` (claims ctb_role and ctb_gen, the generation in force at issue)
 * `jti`, `pilot-job` and `pilot-enrolment` name tokens, SLURM jobs and pilot groups; a certificate is none of them (its serial is revoked by
 * DELETE /v1/certificates/{serial}).
 * @see docs/pool-ca.md
 */

/** The kinds that can reach a certificate. */
const CERTIFICATE_KINDS: ReadonlySet<RevocationKind> = new Set(['sub', 'client', 'site', 'role'])

/** What a `certificate.issued` record tells about the certificate, as the holds read it. */
export interface IssuedCertificate {
  serial: string
  /** When it was issued (the record's time). */
  time: number
  /** notAfter. */
  exp: number
  caller: { iss?: string; sub: string; client_id?: string }
  role?: string
  site?: string
}

/** Reads a `certificate.issued` record; undefined for one that names no serial, notAfter or caller. */
export function issuedCertificateOf(e: AuditEvent): IssuedCertificate | undefined {
  const serial = e.detail?.serial
  if (typeof serial !== 'string' || e.exp === undefined || typeof e.caller?.sub !== 'string') return undefined
  const { iss, sub, client_id } = e.caller
  return {
    serial, time: e.time, exp: e.exp,
    caller: { sub, ...(iss !== undefined ? { iss } : {}), ...(client_id !== undefined ? { client_id } : {}) },
    ...(e.role !== undefined ? { role: e.role } : {}),
    ...(e.site !== undefined ? { site: e.site } : {}),
  }
}

/**
 * The revocation entries in force for certificates at `now`, indexed by the revocation module's matcher.
 *
 * An entry is in force for certificates while it is not lifted and until the later of its `until` and
 * `revokedAt + maxLifetime`: the revocation module sets `until` from the longest token lifetime, and a
 * certificate issued just before the revocation may live `maxLifetime` (the longest certificate lifetime:
 * ca.max_lifetime, or longer ones granted before it was lowered, certificate_service.ts). With the
 * defaults (7 days each) the two are the same.
 *
 * `sub`, `client` and `site` entries hold every unexpired certificate they match, whatever its issue time
 * (the record is presented without an `iat`), and refuse new ones (`refusal`) while in force: lifting the
 * entry releases both. A `role` entry acts by generation, as for tokens: it holds the certificates issued
 * before it, and refuses nothing, because it cannot be lifted and the role's new certificates postdate it.
 */
export class CertificateHolds {
  readonly #entries: ReadonlyArray<{ revokedAt: number; until: number; snapshot: RevocationSnapshot }>
  readonly #all: RevocationSnapshot
  /** Every role entry ever recorded (they are never lifted nor pruned), to date a certificate's generation. */
  readonly #roleHistory: ReadonlyMap<string, ReadonlyArray<{ revokedAt: number; gen: number }>>

  constructor(revocations: readonly Revocation[], now: number, maxLifetime: number) {
    const inForce = revocations
      .filter((r) => CERTIFICATE_KINDS.has(r.kind) && r.liftedAt === undefined)
      .map((r) => ({ ...r, until: Math.max(r.until, r.revokedAt + maxLifetime) }))
      .filter((r) => r.until >= now)
      .sort((a, b) => a.revokedAt - b.revokedAt || a.id - b.id)
    const history = new Map<string, Array<{ revokedAt: number; gen: number }>>()
    for (const r of revocations) {
      if (r.kind === 'role' && r.gen !== undefined) history.set(r.value, [...history.get(r.value) ?? [], { revokedAt: r.revokedAt, gen: r.gen }])
    }
    this.#roleHistory = history
    const gens = (rs: readonly Revocation[]) => {
      const m = new Map<string, number>()
      for (const r of rs) if (r.kind === 'role') m.set(r.value, Math.max(m.get(r.value) ?? 0, r.gen ?? INITIAL_GENERATION + 1))
      return m
    }
    this.#entries = inForce.map((r) => ({ revokedAt: r.revokedAt, until: r.until, snapshot: new RevocationSnapshot([r], gens([r]), now) }))
    this.#all = new RevocationSnapshot(inForce, gens(inForce), now)
  }

  /** True when no entry can reach a certificate: the CRL needs no issuance record. */
  get empty(): boolean {
    return this.#entries.length === 0
  }

  /**
   * The `revokedAt` of the earliest entry in force that matches the certificate and had not ended when it
   * was issued, or undefined. (With `now` in the past, for the CRL's grace after expiry, an entry may have
   * ended since: a certificate issued after that was not refused by it and is not held by it.)
   */
  heldSince(cert: IssuedCertificate): number | undefined {
    const claims = this.#claimsOf(cert)
    if (!this.#matches(this.#all, cert, claims)) return undefined
    return this.#entries.find((e) => cert.time <= e.until && this.#matches(e.snapshot, cert, claims))?.revokedAt
  }

  /** Why a new certificate for this caller and site must not be issued, or undefined. Safe to show the caller. */
  refusal(caller: IssuedCertificate['caller'], site: string | undefined): string | undefined {
    const blocked = this.#all.blockedCaller(caller)
    if (blocked !== undefined) return blocked
    // Only the site claim: a role entry refuses nothing (see above).
    return site !== undefined && this.#all.isRevoked({ ctb_site: site }) ? `site ${site} has been revoked` : undefined
  }

  #matches(snapshot: RevocationSnapshot, cert: IssuedCertificate, claims: object): boolean {
    return snapshot.blockedCaller(cert.caller) !== undefined || snapshot.isRevoked(claims)
  }

  /**
   * The record as token claims: no `sub` (the caller is matched as a caller), no `jti`, no `iat` (so a
   * site entry holds whatever it matches), and for the role the generation in force when it was issued:
   * that of the role's last revocation strictly before, so one in the same second holds it, as a token
   * with `iat` equal to a cut-off is revoked.
   */
  #claimsOf(cert: IssuedCertificate): object {
    if (cert.role === undefined) return cert.site !== undefined ? { ctb_site: cert.site } : {}
    let gen = INITIAL_GENERATION
    for (const r of this.#roleHistory.get(cert.role) ?? []) if (r.revokedAt < cert.time) gen = Math.max(gen, r.gen)
    return { ctb_role: cert.role, ctb_gen: gen, ...(cert.site !== undefined ? { ctb_site: cert.site } : {}) }
  }
}
