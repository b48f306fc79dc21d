import type { AuditEvent, AuditStore } from '../audit/audit_log.ts'
import { BrokerError, InvalidRequest, NotFound, SlowDown, UnauthorizedClient, InvalidTarget } from '../errors.ts'
import type { VerifiedSubject } from '../iam/subject.ts'
import type { Clock } from '../lib/clock.ts'
import type { Policy } from '../policy/compile.ts'
import { decideCertificate, type CertificateDecision } from '../policy/certificate_decision.ts'
import type { LimitRefusal, RequestLimits } from '../ratelimit/request_limits.ts'
import { longestLifetime, type RevocationStore } from '../revocation/revocation.ts'
import { CertificateHolds, issuedCertificateOf } from './identity_holds.ts'
import { checkCsr, checkSanNames, type IssuedHostCertificate, type PoolCa } from './pool_ca.ts'

/** What a caller asks for: a CSR (proof of the key) and the names, role and site. */
export interface CertificateRequest {
  csr: string
  role: string
  site?: string
  dns: string[]
  ip: string[]
  lifetime?: number
}

export interface CertificateServiceDeps {
  ca: PoolCa
  /**
   * The shared store: the audit records (issued and revoked serials) and the identity revocations, so
   * every replica builds the same CRL and refuses the same requests.
   */
  audit: Pick<AuditStore, 'record' | 'query'> & Pick<RevocationStore, 'listRevocations' | 'issuanceHorizon'>
  policy: { readonly current: Policy }
  clock: Clock
  /** Broker-wide cap on a host certificate's lifetime, whatever a grant says. */
  maxLifetime: number
  /** How long a published CRL is valid (its nextUpdate). */
  crlLifetime: number
  /**
   * The caller and role limits of `rate_limits:`, the very counters POST /token takes from: signing with the
   * pool CA and recording it costs at least what a token does (docs/rate-limits.md). Absent: no limits.
   */
  limits?: Pick<RequestLimits, 'admit' | 'admitRole' | 'limitsCallers'>
  /** Counts a rate-limit refusal already recorded in this audit window (the refusal tally's aggregate). */
  refusals?: { note(error: string, clientAddress: string | undefined): void }
  /**
   * Called once a certificate revocation has committed: `serve` then anchors the audit log soon
   * (revocation_watch.ts), so a copy of the database from before it, restored later, is refused at start.
   */
  committed?: () => void
}

/** Who did it, for the audit record. */
export interface Actor { principal: string; requestId?: string; clientAddress?: string }

const SERIAL = /^[0-9a-f]{2,40}$/
/** How long a CRL is served before the audit log is asked again for revocations made elsewhere. */
const CRL_RECHECK_SECONDS = 10

/**
 * Host certificates under policy, audited: an issued certificate's serial is committed to the audit log
 * before the certificate leaves (fail closed); a revocation is one audited record, and the CRL is built
 * from those records. No HTTP here.
 * @see docs/pool-ca.md
 */
export class CertificateService {
  readonly #d: CertificateServiceDeps
  /**
   * The last CRL signed, and its entries (by crlEntryKey) with their certificates' notAfter: another
   * replica's revocation changes them, not only their count.
   */
  #crl: { pem: string; until: number; entries: ReadonlyMap<string, number>; checkedAt: number } | undefined
  /** The CRL being rebuilt: concurrent requests share one read of the audit log. */
  #crlBuilding: Promise<string> | undefined
  /** Bumped by each revocation here: a CRL built from a read made before it is not kept. */
  #crlGeneration = 0
  /** Revocations run one at a time, so two racing requests for one serial record it once. */
  #revoking: Promise<unknown> = Promise.resolve()

  constructor(deps: CertificateServiceDeps) {
    this.#d = deps
  }

  get caPem(): string {
    return this.#d.ca.pem
  }

  /** What the policy and the revocations would answer for these names, role and site; signs nothing, records nothing (a plan). */
  async check(req: Omit<CertificateRequest, 'csr'>, subject: VerifiedSubject): Promise<CertificateDecision> {
    const dns = req.dns.map((d) => d.toLowerCase())
    checkSanNames(dns, req.ip)
    return (await this.#decide(req, dns, subject, this.#d.clock.now())).decision
  }

  /**
   * Takes one request from the verified caller's allowance. Called before the request's body is judged, so a
   * malformed request or a dry run counts too, as every request of a caller counts on POST /token. Past the
   * limit: SlowDown (429), its first refusal in an audit window recorded as `certificate.denied`.
   */
  async admitCaller(subject: VerifiedSubject, actor: Omit<Actor, 'principal'>): Promise<void> {
    if (!this.#d.limits?.limitsCallers) return
    const limited = await this.#d.limits.admit(subject, undefined)
    if (limited) await this.#refuseForRate(limited, subject, actor, {})
  }

  async issue(req: CertificateRequest, subject: VerifiedSubject, actor: Omit<Actor, 'principal'>): Promise<IssuedHostCertificate> {
    const dns = req.dns.map((d) => d.toLowerCase())
    let publicKey
    try {
      checkSanNames(dns, req.ip)
      if (new Set(dns).size !== dns.length || new Set(req.ip).size !== req.ip.length) throw new InvalidRequest('a name is listed twice')
      publicKey = await checkCsr(req.csr)
    } catch (err) {
      throw await this.refuse(err, subject, actor, { role: req.role, detail: { dns, ip: req.ip } })
    }
    const now = this.#d.clock.now()
    const { decision, heldSite } = await this.#decide(req, dns, subject, now)
    const base: Omit<AuditEvent, 'type'> = {
      time: now, caller: callerOf(subject), role: req.role, tokenKind: 'host_certificate',
      ...(actor.requestId ? { requestId: actor.requestId } : {}),
      ...(actor.clientAddress ? { clientAddress: actor.clientAddress } : {}),
    }
    if (!decision.allow) {
      await this.#d.audit.record({ ...base, type: 'certificate.denied', decision: 'deny', reason: decision.reason, ...(heldSite !== undefined ? { site: heldSite } : {}), detail: { dns, ip: req.ip } })
      throw decision.error === 'invalid_target' ? new InvalidTarget(decision.reason) : new UnauthorizedClient(decision.reason)
    }
    // The role's allowance only once the policy granted it: nobody can use up a role they are not granted.
    if (this.#d.limits?.limitsCallers) {
      const limited = await this.#d.limits.admitRole(req.role)
      if (limited) await this.#refuseForRate(limited, subject, actor, { role: req.role, ...(decision.site !== undefined ? { site: decision.site } : {}) })
    }
    const cert = await this.#d.ca.issueHostCertificate({ publicKey, dns, ip: req.ip }, { now, lifetime: decision.lifetime })
    // Fail closed: the certificate leaves only once its serial is on record.
    await this.#d.audit.record({
      ...base, type: 'certificate.issued', decision: 'allow', policyRule: decision.ruleId, issuedSub: dns[0]!, exp: cert.notAfter,
      ...(decision.site !== undefined ? { site: decision.site } : {}),
      detail: { serial: cert.serial, dns, ip: req.ip, notBefore: cert.notBefore },
    })
    return cert
  }

  /**
   * Puts on record the refusal of a request whose caller verified, for what was wrong with the request
   * itself (its body, its names, a CSR whose proof of possession fails), and returns the error to throw:
   * as on POST /token, every such refusal is one record, so an attempt on a key the caller does not hold
   * or on a wildcard name shows in the audit log. The policy's refusals are recorded by issue() itself.
   * Anything but a 4xx BrokerError is returned untouched, unrecorded.
   */
  async refuse(err: unknown, subject: VerifiedSubject, actor: Omit<Actor, 'principal'>, at: { role?: string; detail?: Record<string, unknown> } = {}): Promise<unknown> {
    // A rate-limit refusal has its own record (#refuseForRate); a 5xx is the broker's failing, not a refusal.
    if (!(err instanceof BrokerError) || err instanceof SlowDown || err.status >= 500) return err
    await this.#d.audit.record(this.#denial(err, subject, actor, at.role !== undefined ? { role: at.role } : {}, at.detail))
    return err
  }

  /** The `certificate.denied` record of a refusal the policy did not make (the request's own fault, a rate limit). */
  #denial(err: BrokerError, subject: VerifiedSubject, actor: Omit<Actor, 'principal'>, at: { role?: string; site?: string }, detail?: Record<string, unknown>): AuditEvent {
    return {
      type: 'certificate.denied', decision: 'deny', time: this.#d.clock.now(), caller: callerOf(subject), tokenKind: 'host_certificate',
      reason: `${err.error}: ${err.description}`, ...at,
      ...(actor.requestId ? { requestId: actor.requestId } : {}),
      ...(actor.clientAddress ? { clientAddress: actor.clientAddress } : {}),
      ...(detail ? { detail } : {}),
    }
  }

  /** A rate-limit refusal: recorded when it is the first in its audit window, otherwise only counted. */
  async #refuseForRate(limited: LimitRefusal, subject: VerifiedSubject, actor: Omit<Actor, 'principal'>, at: { role?: string; site?: string }): Promise<never> {
    const refusal = new SlowDown(limited.description, limited.retryAfter)
    if (limited.record) {
      await this.#d.audit.record(this.#denial(refusal, subject, actor, at))
    } else {
      this.#d.refusals?.note(refusal.error, actor.clientAddress)
    }
    throw refusal
  }

  /**
   * The one decision check() reports and issue() acts on: the policy's, then the identity revocations'
   * refusal, then the lifetime capped at the broker's. The revocations are read from the store, not a
   * snapshot: a certificate outlives a token by days, and a replica that has not yet seen a site's
   * revocation must not sign for it. `heldSite`: the grant's site when the revocations refused it.
   */
  async #decide(req: Omit<CertificateRequest, 'csr'>, dns: string[], subject: VerifiedSubject, now: number): Promise<{ decision: CertificateDecision; heldSite?: string }> {
    const d = decideCertificate(this.#d.policy.current, {
      subject, role: req.role, dns, ip: req.ip,
      ...(req.site !== undefined ? { site: req.site } : {}),
      ...(req.lifetime !== undefined ? { lifetime: req.lifetime } : {}),
    })
    if (!d.allow) return { decision: d }
    const refused = (await this.#holds(now, await this.#longestLifetime())).refusal(callerOf(subject), d.site)
    if (refused !== undefined) return { decision: { allow: false, error: 'unauthorized_client', reason: refused }, ...(d.site !== undefined ? { heldSite: d.site } : {}) }
    return { decision: { ...d, lifetime: Math.min(d.lifetime, this.#d.maxLifetime) } }
  }

  /** Revokes an issued serial (idempotent: a second revocation returns the first). */
  revoke(serial: string, reason: string | undefined, actor: Actor): Promise<{ serial: string; revokedAt: number; notAfter: number; already: boolean }> {
    const next = this.#revoking.then(() => this.#revoke(serial, reason, actor))
    this.#revoking = next.catch(() => undefined)
    return next
  }

  async #revoke(serial: string, reason: string | undefined, actor: Actor): Promise<{ serial: string; revokedAt: number; notAfter: number; already: boolean }> {
    const s = serial.toLowerCase()
    if (!SERIAL.test(s)) throw new NotFound('no such certificate: a serial is lower-case hex')
    // Unreadable records are passed over here, not refused as for the CRL: one can only hide that the serial
    // is revoked already (a second record, as replicas racing write) or that it was issued (NotFound), while
    // refusing made one such record anywhere stop every revocation.
    const existing = (await this.#revocations('skip')).find((r) => r.serial === s)
    if (existing) return { ...existing, already: true }
    const issued = await this.#issued(s)
    if (!issued) throw new NotFound(`no certificate with serial ${s} was issued by this CA`)
    const now = this.#d.clock.now()
    await this.#d.audit.record({
      type: 'certificate.revoked', time: now, decision: 'allow', caller: { sub: actor.principal }, exp: issued.notAfter,
      ...(issued.site !== undefined ? { site: issued.site } : {}),
      ...(reason !== undefined ? { reason } : {}),
      ...(actor.requestId ? { requestId: actor.requestId } : {}),
      ...(actor.clientAddress ? { clientAddress: actor.clientAddress } : {}),
      detail: { serial: s },
    })
    this.#d.committed?.()
    this.#crl = undefined
    this.#crlBuilding = undefined
    this.#crlGeneration++
    return { serial: s, revokedAt: now, notAfter: issued.notAfter, already: false }
  }

  /**
   * The current CRL (PEM): every certificate revoked by serial, and every one an identity revocation in
   * force holds (identity_holds.ts), until a CRL lifetime after its notAfter (#listed). Re-signed when an
   * entry is added or a listed one removed, or half its life is gone; an entry that ages out stays until then.
   */
  crl(): Promise<string> {
    const now = this.#d.clock.now()
    // The route is public and the revocations are a query over the audit log: read it at most every few
    // seconds (a revocation through this service clears the cache at once; another replica's, and any
    // identity revocation or lift, shows up within CRL_RECHECK_SECONDS).
    if (this.#crl && this.#crl.until > now && now - this.#crl.checkedAt < CRL_RECHECK_SECONDS) return Promise.resolve(this.#crl.pem)
    if (!this.#crlBuilding) {
      const building = this.#rebuildCrl(now).finally(() => { if (this.#crlBuilding === building) this.#crlBuilding = undefined })
      this.#crlBuilding = building
    }
    return this.#crlBuilding
  }

  async #rebuildCrl(now: number): Promise<string> {
    const generation = this.#crlGeneration
    // The holds as they stood a CRL lifetime ago too: an entry that has since ended still lists what it held
    // for as long as #listed keeps expired certificates (it refuses nothing: that is #holds(now)).
    const longest = await this.#longestLifetime()
    const [revoked, holds] = await Promise.all([this.#revocations('refuse'), this.#holds(now - this.#d.crlLifetime, longest)])
    const live: CrlEntry[] = revoked.filter((r) => this.#listed(r.notAfter, now))
    // A serial revoked by itself keeps that entry (permanent); a hold lists it only while no such entry does.
    if (!holds.empty) live.push(...await this.#held(holds, new Set(live.map((r) => r.serial)), now, longest))
    const entries = new Map(live.map((e) => [crlEntryKey(e), e.notAfter]))
    // With thousands of certificates held one expires every minute or so; re-signing for each would sign
    // (about 0.5 s for 10,000 entries) and change a CRL of hundreds of kB at nearly every recheck. An
    // expiry alone therefore waits for the scheduled re-signing: RFC 5280 §3.3 keeps an entry until one
    // regularly scheduled CRL beyond the certificate's validity anyway.
    const cached = this.#crl
    if (generation === this.#crlGeneration && cached && cached.until > now
      && [...entries.keys()].every((k) => cached.entries.has(k))
      && [...cached.entries].every(([k, notAfter]) => entries.has(k) || !this.#listed(notAfter, now))) {
      cached.checkedAt = now
      return cached.pem
    }
    const pem = await this.#d.ca.crl(live, { now, lifetime: this.#d.crlLifetime })
    if (generation === this.#crlGeneration) this.#crl = { pem, until: now + Math.floor(this.#d.crlLifetime / 2), entries, checkedAt: now }
    return pem
  }

  /**
   * Whether a revoked certificate with this notAfter is still listed. It is valid through its notAfter
   * second (RFC 5280 §4.1.2.5), and its entry may leave only once it has appeared on a regularly scheduled
   * CRL issued after that (§3.3, §5.1.2.6), which a relying party whose clock is behind still needs: kept
   * for one CRL lifetime beyond, during which the CRL is re-signed at least once (half its life) if asked for.
   */
  #listed(notAfter: number, now: number): boolean {
    return notAfter + this.#d.crlLifetime > now
  }

  /** `longest`: #longestLifetime, read once by the caller. */
  async #holds(now: number, longest: number): Promise<CertificateHolds> {
    return new CertificateHolds(await this.#d.audit.listRevocations(), now, longest)
  }

  /**
   * ca.max_lifetime, or the longest lifetime the broker ever granted if that is longer: a certificate
   * issued before an admin lowered ca.max_lifetime keeps its own notAfter.
   */
  #longestLifetime(): Promise<number> {
    return longestLifetime(this.#d.audit, 'certificate', this.#d.maxLifetime)
  }

  /**
   * The listed certificates (#listed) the holds match, except `revoked`. Reads only the issuance records of
   * the last #longestLifetime and CRL lifetime (no certificate issued earlier is still listed), and only when
   * an entry in force can match a certificate at all.
   */
  async #held(holds: CertificateHolds, revoked: ReadonlySet<string>, now: number, longest: number): Promise<CrlEntry[]> {
    const out = new Map<string, CrlEntry>()
    for await (const e of this.#events('certificate.issued', 'refuse', now - longest - this.#d.crlLifetime)) {
      const cert = issuedCertificateOf(e)
      if (!cert || !this.#listed(cert.exp, now) || revoked.has(cert.serial) || out.has(cert.serial)) continue
      const since = holds.heldSince(cert)
      // Not dated before the certificate itself (one signed by a replica racing the revocation).
      if (since !== undefined) out.set(cert.serial, { serial: cert.serial, revokedAt: Math.max(since, cert.time), notAfter: cert.exp, hold: true })
    }
    return [...out.values()]
  }

  /** One entry per serial, the earliest revocation (replicas racing on one serial may both record it). */
  async #revocations(unreadable: Unreadable): Promise<Array<{ serial: string; revokedAt: number; notAfter: number }>> {
    const out = new Map<string, { serial: string; revokedAt: number; notAfter: number }>()
    for await (const e of this.#events('certificate.revoked', unreadable)) {
      const serial = e.detail?.serial
      const seen = typeof serial === 'string' ? out.get(serial) : undefined
      if (typeof serial === 'string' && (!seen || e.time < seen.revokedAt)) out.set(serial, { serial, revokedAt: e.time, notAfter: e.exp ?? 0 })
    }
    return [...out.values()]
  }

  async #issued(serial: string): Promise<{ notAfter: number; site?: string } | undefined> {
    for await (const e of this.#events('certificate.issued', 'skip')) {
      if (e.detail?.serial === serial) return { notAfter: e.exp ?? 0, ...(e.site !== undefined ? { site: e.site } : {}) }
    }
    return undefined
  }

  async *#events(type: 'certificate.issued' | 'certificate.revoked', unreadable: Unreadable, from?: number): AsyncGenerator<AuditEvent> {
    let cursor: string | undefined
    // Bounded: at most 1000 pages of 1000; a pool CA issuing more than that in one retention window is misused.
    for (let page = 0; page < 1000; page++) {
      const res = await this.#d.audit.query({ type, limit: 1000, ...(from !== undefined ? { from } : {}), ...(cursor ? { cursor } : {}) })
      for (const r of res.records) {
        // Fail closed: its serial cannot be read, and a CRL without it would vouch for a certificate it should list.
        if (r.unreadable && unreadable === 'skip') continue
        if (r.unreadable) throw new Error(`the ${type} record at seq ${r.seq} cannot be read (${r.unreadable.reason}); the CRL is not served without it (run "audit verify")`)
        yield r.event
      }
      if (!res.nextCursor) return
      cursor = res.nextCursor
    }
    // Fail closed: a CRL built from part of the records would leave the others' serials out.
    throw new Error(`more than 1,000,000 ${type} records to read; the CRL is not served incomplete (shorten audit.retention_days or ca.max_lifetime)`)
  }
}

/**
 * What a read of the certificate records does with one whose body cannot be read: the CRL refuses (a CRL
 * without its serial would vouch for a certificate it should list); a revocation passes over it (#revoke).
 */
type Unreadable = 'refuse' | 'skip'

/** One CRL entry and when its certificate expires. */
interface CrlEntry { serial: string; revokedAt: number; notAfter: number; hold?: boolean }

/** What tells two CRL entries apart: a hold differs from a revocation of the same serial, and by its date. */
function crlEntryKey(e: CrlEntry): string {
  return e.hold ? `${e.serial}/hold@${e.revokedAt}` : e.serial
}

/** The caller as the audit records it, and as the identity holds match it. */
function callerOf(s: VerifiedSubject): { iss: string; sub: string; client_id?: string; groups?: string[] } {
  return { iss: s.iss, sub: s.sub, ...(s.client_id ? { client_id: s.client_id } : {}), ...(s.groups.length ? { groups: s.groups } : {}) }
}
