import type { AuditRecord } from './audit_log.ts'

/**
 * What an export came to: how many records it wrote, and, when retention pruned ahead of it, the seq it
 * wrote last and the one the log went on at (the export stopped there).
 */
export type ExportOutcome = { records: number; prunedMeanwhile?: { after: number; next: number } }

/**
 * Writes every record `scan` yields (from the first, in chain order) that `keep` keeps (all when absent).
 *
 * The scan reads the log in pages while retention may prune it in chunks (PRUNE_CHUNK records, one commit
 * every few hundred milliseconds for minutes); a chunk committing after a page was read deletes the rows of
 * the next pages, and the export skipped from one seq to a later one: a chain the offline verifier calls
 * broken, as if records had been deleted by hand. So an unfiltered export that finds a seq missing asks
 * where the log starts now: past the first record written, retention pruned what it skipped, and the export
 * stops there and says so (to be run again). A gap with the first record still in place is written as found,
 * since showing it is what the export is for.
 */
export async function exportChain(scan: (fromSeq?: number) => AsyncIterable<AuditRecord>, keep: ((r: AuditRecord) => boolean) | undefined, write: (r: AuditRecord) => Promise<void> | void): Promise<ExportOutcome> {
  let records = 0
  let first: number | undefined
  let last: number | undefined
  for await (const r of scan()) {
    if (!keep && last !== undefined && r.seq !== last + 1 && (await firstSeq(scan)) > first!) {
      return { records, prunedMeanwhile: { after: last, next: r.seq } }
    }
    first ??= r.seq
    last = r.seq
    if (keep && !keep(r)) continue
    await write(r)
    records++
  }
  return { records }
}

async function firstSeq(scan: (fromSeq?: number) => AsyncIterable<AuditRecord>): Promise<number> {
  for await (const r of scan(1)) return r.seq
  return Infinity
}
