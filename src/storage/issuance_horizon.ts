import type { AuditColumns } from '../audit/chain.ts'
import type { IssuanceHorizon, IssuanceHorizons, NewRevocation } from '../revocation/revocation.ts'

/**
 * The issuance horizons (revocation.ts) as the backends keep them: a row per kind beside the chain, raised
 * in the transaction that appends the records it follows, so a revocation in a later op of the same or a
 * later batch sees every earlier issuance. They only ever grow; raising one costs one statement when a
 * batch brings a later expiry or a longer lifetime, about once a second under load.
 */

export type HorizonKind = keyof IssuanceHorizons

/**
 * The records whose `exp` ends something the broker handed out, and the horizon each one raises. An IAM
 * access token the broker fetched for a job (`token_kind` access_token) is IAM's, with IAM's lifetime: no
 * revocation of the broker's reaches it, so it raises nothing.
 */
export const HORIZON_KIND_OF: Readonly<Record<string, HorizonKind>> = {
  'token.issued': 'token',
  'token.renewed': 'token',
  'certificate.issued': 'certificate',
}

/**
 * The order every statement takes the rows in (the seed's ORDER BY k, a writer's raises): on PostgreSQL
 * a replica's reseed at start and another's batch raising both rows each hold one and wait for the other
 * if they take them in opposite orders (a deadlock: PostgreSQL aborts one, failing the batch or the start).
 */
const KINDS_IN_LOCK_ORDER = ['certificate', 'token'] as const satisfies readonly HorizonKind[]

/** SQLite's two-argument `max` is PostgreSQL's GREATEST. */
type Greatest = 'max' | 'GREATEST'

/** The rows only ever grow: an insert over an existing row keeps the larger of each value. */
function keepLarger(greatest: Greatest): string {
  return `ON CONFLICT (kind) DO UPDATE SET exp = ${greatest}(issuance_horizon.exp, excluded.exp), lifetime = ${greatest}(issuance_horizon.lifetime, excluded.lifetime)`
}

/**
 * SQL of the seed: the horizons of the log's records (of those `range`, an SQL condition on `seq`, admits),
 * one row per kind it has records of. Run over the whole log by the schema step that creates the table,
 * and at every start of serve over what was appended since the previous start (reseedHorizonsSql).
 */
export function seedHorizonsSql(greatest: Greatest, range = '1 = 1'): string {
  const types = Object.keys(HORIZON_KIND_OF)
  const kind = `CASE type ${types.map((t) => `WHEN '${t}' THEN '${HORIZON_KIND_OF[t]}'`).join(' ')} END`
  return `INSERT INTO issuance_horizon (kind, exp, lifetime)
     SELECT ${kind} AS k, max(exp), max(${greatest}(exp - time, 0)) FROM audit_log
     WHERE ${range} AND type IN (${types.map((t) => `'${t}'`).join(', ')}) AND exp IS NOT NULL AND ${NOT_IAM_TOKEN_SQL} GROUP BY k ORDER BY k
   ${keepLarger(greatest)}`
}

/**
 * The schema step of the reseed's mark: the chain head's seq the last reseed read up to. It starts at 0,
 * so the first start after the upgrade reads the whole log once more.
 */
export function seedMarkTableSql(integer: 'INTEGER' | 'BIGINT'): string {
  return `CREATE TABLE IF NOT EXISTS issuance_horizon_seeded (id INTEGER PRIMARY KEY CHECK (id = 1), seq ${integer} NOT NULL);
   INSERT INTO issuance_horizon_seeded (id, seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;`
}

// A missing mark row reads as 0 (the whole log) and is put back: never a pass that reads nothing.
const MARK = 'coalesce((SELECT seq FROM issuance_horizon_seeded WHERE id = 1), 0)'
const HEAD = '(SELECT seq FROM audit_head WHERE id = 1)'
// A mark above the head means the log was cut back since (records undone by hand, tables restored apart):
// the seqs past the head are handed out again, so the pass reads the whole log, not nothing.
const SEEDED = `(CASE WHEN ${MARK} <= ${HEAD} THEN ${MARK} ELSE 0 END)`

/**
 * The reseed at a start of serve: a writer of the previous version (a replica not yet restarted) appends
 * without raising the rows, so what was appended since the last reseed is folded in and the mark moved to
 * the head. Reading only that, not the whole log, keeps start-up from growing with the log (PostgreSQL:
 * ~0.5-1 s per million records). Every record at or below the head is committed: writers append under
 * the chain lock and move the head in the same transaction, so one snapshot that sees the head sees them.
 * PostgreSQL: one statement (one snapshot), safe beside other replicas' reseeds and appends. SQLite:
 * two, run under the write lock.
 *
 * The mark is set to the head this pass read up to, not kept at the larger: a mark left above the head by
 * a cut-back log must come down, or the records appended below it once the head passes it again are never
 * read. A replica whose pass saw an earlier head may so set the mark below another's: the next pass then
 * reads a few records twice, which only raises.
 */
export function reseedHorizonsSql(greatest: Greatest): string[] {
  const fold = seedHorizonsSql(greatest, `seq > ${SEEDED} AND seq <= ${HEAD}`)
  const move = `INSERT INTO issuance_horizon_seeded (id, seq) VALUES (1, ${HEAD})
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq`
  return greatest === 'GREATEST' ? [`WITH folded AS (${fold} RETURNING kind) ${move}`] : [fold, move]
}

/** The statement that raises one kind's row (parameters kind, exp, lifetime as `placeholders`). */
export function raiseHorizonSql(greatest: Greatest, placeholders: readonly [string, string, string]): string {
  const [kind, exp, lifetime] = placeholders
  return `INSERT INTO issuance_horizon (kind, exp, lifetime) VALUES (${kind}, ${exp}, ${lifetime}) ${keepLarger(greatest)}`
}

const IAM_TOKEN_KIND = 'access_token'
const NOT_IAM_TOKEN_SQL = `(token_kind IS NULL OR token_kind <> '${IAM_TOKEN_KIND}')`

export const NO_HORIZON: IssuanceHorizon = { exp: 0, lifetime: 0 }

export function noHorizons(): IssuanceHorizons {
  return { token: NO_HORIZON, certificate: NO_HORIZON }
}

/** Rows as read from either backend (kinds it does not know are ignored). */
export function horizonsFromRows(rows: ReadonlyArray<{ kind: string; exp: number; lifetime: number }>): IssuanceHorizons {
  const out = noHorizons()
  for (const r of rows) if (r.kind === 'token' || r.kind === 'certificate') out[r.kind] = { exp: Number(r.exp), lifetime: Number(r.lifetime) }
  return out
}

/** The larger of each value. */
export function wider(a: IssuanceHorizon, b: IssuanceHorizon): IssuanceHorizon {
  return a.exp >= b.exp && a.lifetime >= b.lifetime ? a : { exp: Math.max(a.exp, b.exp), lifetime: Math.max(a.lifetime, b.lifetime) }
}

/**
 * Follows one backend's appends. `known` is a value each row is at least at (rows only grow, so a value
 * another process raised them past since is merely stale, never wrong); `batch` what this transaction's
 * records reach so far.
 */
export class HorizonTracker {
  #known: IssuanceHorizons
  #batch: IssuanceHorizons = noHorizons()

  constructor(known: IssuanceHorizons = noHorizons()) {
    this.#known = known
  }

  /** At a transaction's start. */
  begin(): void {
    this.#batch = noHorizons()
  }

  observe(cols: AuditColumns): void {
    const exp = cols.exp
    const kind = HORIZON_KIND_OF[cols.type]
    if (kind === undefined || typeof exp !== 'number' || cols.token_kind === IAM_TOKEN_KIND) return
    this.#batch[kind] = wider(this.#batch[kind], { exp, lifetime: Math.max(0, exp - cols.time) })
  }

  /** The latest token expiry this transaction has appended so far (0 if none). */
  get batchTokenExp(): number {
    return this.#batch.token.exp
  }

  /** The rows to raise before the commit: those this transaction takes past what they are known to be. */
  raises(): Array<[HorizonKind, IssuanceHorizon]> {
    const out: Array<[HorizonKind, IssuanceHorizon]> = []
    for (const kind of KINDS_IN_LOCK_ORDER) {
      const b = this.#batch[kind]
      if (b.exp > this.#known[kind].exp || b.lifetime > this.#known[kind].lifetime) out.push([kind, b])
    }
    return out
  }

  /** After the commit: what the rows now are at least. (After a rollback, nothing: `begin` drops the batch.) */
  committed(): void {
    this.#known = { token: wider(this.#known.token, this.#batch.token), certificate: wider(this.#known.certificate, this.#batch.certificate) }
    this.#batch = noHorizons()
  }
}

/**
 * The `until` a revocation is stored with: for every kind but `jti` (whose `until` is its one token's
 * expiry), at least the latest expiry of any token issued before it, so the entry stays in force while a
 * token issued under a longer maximum lifetime than today's is still valid. (Certificates it holds are
 * reckoned by the CRL from the certificate horizon: certificate_service.ts.)
 */
export function revocationUntil(rev: NewRevocation, tokenHorizonExp: number): number {
  return rev.kind === 'jti' ? rev.until : Math.max(rev.until, tokenHorizonExp)
}
