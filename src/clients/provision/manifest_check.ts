import type { BrokerClient } from './broker_client.ts'
import type { Manifest } from './render.ts'

/** Pages of 1000 audit records read for one answer (a host's certificates, the checkpoints): far more than either has. */
const MAX_PAGES = 20

type Event = Record<string, unknown>

const callerOf = (e: Event): string => {
  const c = e.caller as { iss?: unknown; sub?: unknown } | undefined
  return `${String(c?.iss ?? '')} ${String(c?.sub ?? '')}`
}

/**
 * The time before which the broker's retention has pruned its audit log (the latest checkpoint's `before`), or 0.
 */
async function prunedBefore(broker: BrokerClient): Promise<number> {
  let before = 0
  for await (const e of auditEvents(broker, { type: 'audit.checkpoint' })) before = Math.max(before, Number((e.detail as { before?: unknown } | undefined)?.before) || 0)
  return before
}

/** The events of the records matching `query`, page by page (1000 each, at most MAX_PAGES); a consumer that stops early fetches no further page. */
async function* auditEvents(broker: BrokerClient, query: Record<string, string>): AsyncGenerator<Event> {
  let cursor: string | undefined
  for (let page = 0; page < MAX_PAGES; page++) {
    const { events, next } = await broker.auditPage({ ...query, limit: '1000', ...(cursor ? { cursor } : {}) })
    yield* events
    if (!next) return
    cursor = next
  }
}

/**
 * Where a manifest and the broker's audit log disagree, one line per entry; empty when every entry is what the
 * broker issued. The broker revokes whatever jti or serial it is sent, so a hand-edited manifest would have
 * teardown revoke other credentials than the render's: each token must be on record as issued (`token.issued`)
 * with the manifest's kind, role and sub (and a daemon token's exp and host), each certificate as issued for the manifest's host, and all
 * of them to one caller, since one render runs under one operator token. An entry with no record at all is let
 * through only when retention has pruned the log past the render's `created_at`: its record may be gone with the
 * rest (docs/provisioning.md#teardown).
 */
export async function manifestDisagreements(manifest: Pick<Manifest, 'tokens' | 'certificates' | 'created_at'>, broker: BrokerClient): Promise<string[]> {
  const out: string[] = []
  const callers = new Set<string>()
  let pruned: number | undefined
  const mayBePruned = async () => {
    pruned ??= await prunedBefore(broker)
    return typeof manifest.created_at === 'number' && manifest.created_at < pruned
  }
  for (const t of manifest.tokens) {
    const at = `token ${t.jti} (${t.node})`
    const { events } = await broker.auditPage({ jti: t.jti, type: 'token.issued', limit: '10' })
    const e = events.find((x) => x.jti === t.jti && x.decision === 'allow')
    if (!e) { if (!await mayBePruned()) out.push(`${at}: the broker has no record of issuing it`); continue }
    callers.add(callerOf(e))
    // An enrolment credential's sub is the operator's own (docs/pilots.md); a daemon token's is the identity issued.
    const sub = t.kind === 'pilot_enrolment' ? (e.caller as { sub?: unknown } | undefined)?.sub : e.issuedSub
    const host = (e.detail as { host?: unknown } | undefined)?.host
    if (e.tokenKind !== t.kind) out.push(`${at}: the broker issued it as kind ${String(e.tokenKind)}, not ${t.kind}`)
    else if (sub !== t.sub) out.push(`${at}: the broker issued it to sub ${String(sub)}, not ${t.sub}`)
    else if (e.role !== t.role) out.push(`${at}: the broker issued it for role ${String(e.role)}, not ${t.role}`)
    // Teardown sends a daemon token's exp and the broker holds the revocation that long: an earlier one would free it.
    else if (t.kind === 'idtoken' && e.exp !== t.exp) out.push(`${at}: the broker issued it to expire at ${String(e.exp)}, not ${String(t.exp)}`)
    else if (t.host !== undefined && typeof host === 'string' && host.toLowerCase() !== t.host.toLowerCase()) out.push(`${at}: the broker issued it for host ${host}, not ${t.host}`)
  }
  for (const c of manifest.certificates) {
    const at = `certificate ${c.serial} (${c.node})`
    let found: Event | undefined
    // The broker lower-cases a certificate's DNS names before it issues, and records that spelling (its first
    // name) as the sub; a template may spell the host with capitals, and render writes it as spelt.
    const sub = c.host.toLowerCase()
    const serial = c.serial.toLowerCase()
    for await (const x of auditEvents(broker, { type: 'certificate.issued', sub })) {
      if (x.decision === 'allow' && String((x.detail as { serial?: unknown } | undefined)?.serial ?? '').toLowerCase() === serial) { found = x; break }
    }
    if (!found) { if (!await mayBePruned()) out.push(`${at}: the broker has no record of issuing it for ${c.host}`); continue }
    callers.add(callerOf(found))
  }
  if (callers.size > 1) out.push(`its entries were issued to ${callers.size} different callers (${[...callers].sort().join('; ')}); one render runs under one operator`)
  return out
}
