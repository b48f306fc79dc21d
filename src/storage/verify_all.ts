import type { ChainVerification } from '../audit/audit_log.ts'
import { readSealedAnchor, type AnchorCopy, type AnchorReading } from '../audit/anchor.ts'
import { HEAD_MISSING } from '../audit/chain.ts'
import type { RevocationVerification } from '../revocation/revocation_consistency.ts'
import { departsFrom } from './anchor_departure.ts'
import type { ChainSource } from './chain_source.ts'
import { checkRevocations } from './revocation_check.ts'

/**
 * One sealed anchor as `verifyAll` compared it: `departs` names how the log left what that check verified;
 * `absent`, `otherKey` (sealed under another IDTOKEN key) and `unreadable` were not compared.
 */
export type AnchorCheck = { where: 'database' | 'copy' } & (
  /** `pruned`: the anchored record itself was pruned since, so only the log's length could be compared. */
  | { state: 'checked'; seq: number; pruned?: true }
  | { state: 'departs'; reason: string }
  | { state: 'absent' | 'otherKey' }
  | { state: 'unreadable'; reason: string })

/**
 * The whole chain and the revocations against it, in one pass (BrokerStore.verifyAll, for audit verify), and
 * with `anchorKey` the log against each sealed anchor, without resuming from them or sealing a new one.
 */
export async function verifyAllAgainstAnchors(source: ChainSource, options: { anchorKey?: Buffer; anchorCopy?: AnchorCopy }): Promise<{ chain: ChainVerification; revocations: RevocationVerification; anchors?: AnchorCheck[] }> {
  const { anchorKey, anchorCopy } = options
  if (!anchorKey) return checkRevocations(source, {})
  // The anchors before the state, as in checkOnce (revocation_check.ts): one sealed meanwhile has a head at
  // least that far.
  const unread = (err: unknown): AnchorReading => ({ unreadable: (err as NodeJS.ErrnoException).code ?? (err as Error).message })
  const readings: Array<['database' | 'copy', AnchorReading]> = [['database', await source.readAnchor().then((t) => readSealedAnchor(t, anchorKey), unread)]]
  if (anchorCopy) readings.push(['copy', await anchorCopy.read().then((t) => readSealedAnchor(t, anchorKey), unread)])
  const opened = readings.flatMap(([, r]) => ('anchor' in r ? [r.anchor] : []))
  // Where MACs began as a check saw it: a chain written again without MACs from there on is named too.
  const macFroms = opened.flatMap((a) => (a.macFrom !== undefined ? [a.macFrom] : []))
  const result = await checkRevocations(source, macFroms.length > 0 ? { macFrom: Math.min(...macFroms) } : {})
  const state = await source.readRevocationState()
  const anchors: AnchorCheck[] = []
  for (const [where, r] of readings) {
    if ('absent' in r) anchors.push({ where, state: 'absent' })
    else if ('otherKey' in r) anchors.push({ where, state: 'otherKey' })
    else if ('unreadable' in r) anchors.push({ where, state: 'unreadable', reason: r.unreadable })
    else {
      const departs = state.head ? await departsFrom(source, [r.anchor], state.head, state.firstSeq) : HEAD_MISSING
      anchors.push(departs !== undefined ? { where, state: 'departs', reason: departs } : { where, state: 'checked', seq: r.anchor.seq, ...(r.anchor.seq < state.firstSeq ? { pruned: true as const } : {}) })
    }
  }
  return { ...result, anchors }
}
