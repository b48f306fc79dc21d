import type { ChainAnchor } from '../audit/anchor.ts'
import type { ChainHead } from '../audit/chain.ts'
import type { ChainSource } from './chain_source.ts'

/**
 * Why the log is not the one sealed anchors say an earlier check verified, or undefined. The head only
 * grows, so an anchor past it means verified records are gone: the newest ones cut off and the head set
 * back (a revocation among them undone without a trace inside the chain), or an older copy of the database
 * restored. And a record an anchor names, if not pruned since, still has the hash it had: otherwise the
 * chain was rewritten below it with every hash recomputed (or this is another database). Checked in full,
 * such a chain is whole, and a new anchor would be sealed over it.
 */
export async function departsFrom(source: ChainSource, anchors: Array<ChainAnchor | undefined>, head: ChainHead, firstSeq: number): Promise<string | undefined> {
  for (const a of anchors) {
    if (a && a.seq > head.seq) {
      return `the audit log ends at seq ${head.seq}, but an earlier check verified it up to seq ${a.seq} (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says)`
    }
  }
  for (const a of anchors) {
    if (!a || a.seq === 0 || a.seq < firstSeq) continue
    const [row] = await source.readRows([a.seq])
    if (row?.hash !== a.hash) {
      return `record seq ${a.seq} is not the record an earlier check verified (its hash changed: records rewritten with their hashes recomputed, or another database)`
    }
  }
  return undefined
}
