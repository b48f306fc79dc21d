import type { AuditEvent, AuditRecord, ChainVerification } from '../audit/audit_log.ts'
import { openAnchor, sealAnchor, type AnchorCopy } from '../audit/anchor.ts'
import { ChainVerifier, checkRecord, rowToRecord, type CheckpointDetail, type StoredRow } from '../audit/chain.ts'
import type { IssuanceHorizon, IssuanceHorizons } from '../revocation/revocation.ts'
import { verifyRevocationEvidence, type RevocationVerification } from '../revocation/revocation_consistency.ts'
import { departsFrom } from './anchor_departure.ts'
import { LoopTurns } from './loop_turns.ts'
import { macCheck, type ChainSource } from './chain_source.ts'
import { statesRevocations } from './revocation_rows.ts'

/**
 * `anchorKey`: resume from the sealed anchor and seal a new one. `anchorCopy`: also check against, and
 * refresh, the copy of the anchor kept outside the database. `signal`: abandons the check (rejecting with its
 * reason, sealing nothing), so a shutdown need not wait for a full check of the log. `onAnchorWrite`: hears
 * how writing the new anchor into the database went (the failure, or undefined once written).
 */
export interface VerifyRevocationsOptions { anchorKey?: Buffer; anchorCopy?: AnchorCopy; signal?: AbortSignal; onAnchorWrite?: AnchorWriteListener }

/** Told of each attempt to write a sealed anchor into the database: its failure, or undefined when it was written. */
export type AnchorWriteListener = (failure: unknown) => void

/** Records an anchor lists that one slice of the anchored check re-reads and re-checks before a turn of the event loop. */
const EVIDENCE_SLICE = 500

/**
 * How many times one check runs at most while the log's first seq keeps moving up under it. Retention prunes in
 * chunks, one commit each (PRUNE_CHUNK), and the first prune of a large log commits one every few hundred
 * milliseconds for minutes, so a check can see the first seq move at every attempt until the prune ends.
 */
export const MAX_ATTEMPTS = 1000

/**
 * One check, run again when it failed while the log's first seq moved up: a prune (retention in this process,
 * whose timer fires with the periodic check's, or another replica's) that commits after the check read the
 * log's extent deletes records it then reads, which looked like records deleted by hand, and refused a
 * start or logged tampering. Run again as long as the first seq keeps moving, not a fixed three times: a
 * chunked prune moves it at every chunk, and three attempts ended inside it with a false alarm. Bounded: a
 * prefix deleted by hand stays deleted and is named by the next run, and MAX_ATTEMPTS caps the rest.
 */
export async function checkRevocations(source: ChainSource, options: VerifyRevocationsOptions & { macFrom?: number }): Promise<{ chain: ChainVerification; revocations: RevocationVerification }> {
  for (let attempt = 1; ; attempt++) {
    const { firstSeq, ...result } = await checkOnce(source, options)
    if ((result.chain.ok && result.revocations.ok) || attempt === MAX_ATTEMPTS) return result
    if ((await source.readRevocationState()).firstSeq <= firstSeq) return result
  }
}

async function checkOnce(source: ChainSource, { anchorKey, anchorCopy, signal, onAnchorWrite, macFrom: knownMacFrom }: VerifyRevocationsOptions & { macFrom?: number }): Promise<{ chain: ChainVerification; revocations: RevocationVerification; firstSeq: number }> {
  // The anchors before the state: an anchor is sealed only once the head reached its seq, so the state read
  // after it has a head at least that far, even when another replica seals one meanwhile.
  const anchor = anchorKey ? openAnchor(await source.readAnchor(), anchorKey) : undefined
  // Unreadable, or sealed under a key since rotated: as if absent (the next successful check replaces it).
  const kept = anchorKey && anchorCopy ? openAnchor(await anchorCopy.read().catch(() => undefined), anchorKey) : undefined
  const state = await source.readRevocationState()
  signal?.throwIfAborted()
  const records: AuditRecord[] = []
  const evidence: Array<[number, string]> = []
  const keep = (row: StoredRow, event: AuditEvent) => {
    records.push({ seq: Number(row.seq), event, prevHash: row.prev_hash, hash: row.hash })
    evidence.push([Number(row.seq), row.hash])
  }
  // Where MACs began as an earlier check saw it: a record after it needs a MAC even when the records
  // that said so are not read again (below the anchor) or were pruned since.
  const anchoredFrom = [anchor?.macFrom, kept?.macFrom, knownMacFrom].filter((n) => n !== undefined)
  const macs = { ...macCheck(source), ...(anchoredFrom.length > 0 ? { macFrom: Math.min(...anchoredFrom) } : {}) }
  let verifier = new ChainVerifier(undefined, macs)
  let from = 1
  let unverified = state.head ? await departsFrom(source, [anchor, kept], state.head, state.firstSeq) : undefined
  // A prune since the anchor (the first seq moved up, not past the anchor) need not mean a full check:
  // the records it removed are accounted for by its checkpoint, which must be found below.
  const pruned = anchor !== undefined && state.firstSeq !== anchor.firstSeq
  if (unverified === undefined && anchor && state.head && anchor.firstSeq <= state.firstSeq && state.firstSeq <= anchor.seq + 1) {
    // Records up to the anchor were verified before: only those that stated revocations are read again,
    // by seq (not by their type column, which a retyping would hide), and must be unchanged.
    // In slices with a turn of the event loop between them: the list only grows (every revocation record
    // not yet pruned), and checked at once, 20,000 held requests up for about 290 ms at every run.
    const listed = anchor.evidence.filter(([seq]) => seq >= state.firstSeq)
    for (let i = 0; i < listed.length && unverified === undefined; i += EVIDENCE_SLICE) {
      if (i > 0) await new Promise<void>((r) => setImmediate(r))
      signal?.throwIfAborted()
      const slice = listed.slice(i, i + EVIDENCE_SLICE)
      const rows = new Map((await source.readRows(slice.map(([seq]) => seq))).map((r) => [Number(r.seq), r]))
      for (const [seq, hash] of slice) {
        const row = rows.get(seq)
        const checked = row ? checkRecord(row) : 'record missing'
        if (typeof checked === 'string' || row!.hash !== hash) {
          unverified = `audit chain broken at seq ${seq}, a record that stated revocations when last verified: ${typeof checked === 'string' ? checked : 'hash changed (record replaced)'}`
          break
        }
        if (statesRevocations(checked.type)) keep(row!, checked)
        else { unverified = `audit chain broken at seq ${seq}, a record that stated revocations when last verified: it no longer does`; break }
      }
    }
    verifier = new ChainVerifier({ seq: anchor.seq, hash: anchor.hash }, macs)
    from = anchor.seq + 1
  }
  let chain: ChainVerification | undefined
  if (unverified === undefined) {
    // A turn every CHECK_SLICE_MS of verification, whatever the backend's paging (loop_turns.ts).
    const turns = new LoopTurns()
    for await (const row of source.scanRows(from)) {
      if (turns.due()) await turns.turn()
      signal?.throwIfAborted()
      if (state.head && Number(row.seq) > state.head.seq) break
      if (verifier.feed(row)) { if (statesRevocations(row.type)) keep(row, rowToRecord(row).event); continue }
      // Broken: the rest cannot be authenticated, but what it states still helps the operator judge.
      let e: AuditEvent | undefined
      try { e = JSON.parse(row.body) as AuditEvent } catch { /* unreadable: nothing to state */ }
      if (e && statesRevocations(e.type)) records.push(rowToRecord(row))
    }
    chain = verifier.finish(state.head)
    if (!chain.ok) unverified = `audit chain broken at seq ${chain.broken.seq}: ${chain.broken.reason}`
    else if (pruned && from > 1 && !(await prunedBy(source, records, state.firstSeq))) {
      // Resumed after a prune: the records before the first seq went only if an authenticated checkpoint
      // says so (else they were deleted by hand, and what they stated with them).
      const reason = `records before seq ${state.firstSeq} are missing and no checkpoint vouches for their removal`
      unverified = `audit chain broken at seq ${state.firstSeq}: ${reason}`
      chain = { ok: false, records: chain.records, broken: { seq: state.firstSeq, reason } }
    }
  }
  chain ??= { ok: false, records: 0, broken: { seq: 0, reason: unverified! } }
  let revocations = verifyRevocationEvidence({ records, rows: state.rows, active: state.active, generations: state.generations }, unverified)
  // The horizons a check saw only grow: the floor the anchors carry, kept in every new anchor so a table
  // lowered once is named at every check until it is raised back.
  let horizons = state.horizons
  for (const a of [anchor, kept]) if (a?.horizons) horizons = widerHorizons(horizons, a.horizons)
  const lowered = horizonsLowered(state.horizons, horizons)
  if (lowered.length > 0) {
    revocations = revocations.ok ? { ok: false, revocations: revocations.revocations, differences: lowered } : { ...revocations, differences: [...revocations.differences, ...lowered] }
  }
  signal?.throwIfAborted()
  if (anchorKey && chain.ok) {
    // Best effort: without a fresh anchor the next start-up only checks more records.
    // A log with no MACs yet, checked by a broker holding the key: every record after this head is written
    // with a MAC (this broker's, the CLI's, the other replicas' share the key), so the anchor says so now.
    // Left to the first record, a rewrite of those records before the next check, then a restart, was
    // taken for a log written before MACs.
    const macFrom = verifier.macFrom ?? (source.auditMac ? chain.head.seq + 1 : undefined)
    const sealed = sealAnchor({ seq: chain.head.seq, hash: chain.head.hash, firstSeq: state.firstSeq, evidence, horizons, ...(macFrom !== undefined ? { macFrom } : {}) }, anchorKey)
    // Still best effort for the check, but told: a failure once went unsaid, and nothing retried before the
    // next interval (the serving watch retries sooner and logs it).
    await source.writeAnchor(sealed).then(() => onAnchorWrite?.(undefined), (err: unknown) => onAnchorWrite?.(err ?? new Error('the anchor write failed')))
    await anchorCopy?.write(sealed).catch(() => {})
  }
  return { chain, revocations, firstSeq: state.firstSeq }
}

/** Whether one of these authenticated records is the checkpoint of the prune that left `firstSeq` first. */
async function prunedBy(source: ChainSource, records: readonly AuditRecord[], firstSeq: number): Promise<boolean> {
  const [first] = await source.readRows([firstSeq])
  return first !== undefined && records.some((r) => {
    const d = r.event.type === 'audit.checkpoint' ? r.event.detail as Partial<CheckpointDetail> | undefined : undefined
    return d?.prunedThroughSeq === firstSeq - 1 && d.prunedLastHash === first.prev_hash
  })
}

function widerHorizons(a: IssuanceHorizons, b: IssuanceHorizons): IssuanceHorizons {
  const wider = (x: IssuanceHorizon, y: IssuanceHorizon) => ({ exp: Math.max(x.exp, y.exp), lifetime: Math.max(x.lifetime, y.lifetime) })
  return { token: wider(a.token, b.token), certificate: wider(a.certificate, b.certificate) }
}

/** A difference for each horizon value the table holds below what an earlier check saw. */
function horizonsLowered(table: IssuanceHorizons, seen: IssuanceHorizons): string[] {
  const out: string[] = []
  for (const kind of ['token', 'certificate'] as const) {
    for (const field of ['exp', 'lifetime'] as const) {
      if (table[kind][field] < seen[kind][field]) {
        const what = field === 'exp' ? 'ends at' : 'has a longest lifetime of'
        out.push(`the ${kind} issuance horizon ${what} ${table[kind][field]} in the table, but it reached ${seen[kind][field]} when last checked (lowered by hand: later revocations would end too early)`)
      }
    }
  }
  return out
}
