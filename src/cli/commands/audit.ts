import { createWriteStream, rmSync } from 'node:fs'
import { once } from 'node:events'
import type { AuditEvent, AuditEventType, AuditQuery, AuditRecord, ChainVerification } from '../../audit/audit_log.ts'
import { exportChain } from '../../audit/chain_export.ts'
import { wireRecord } from '../../audit/record_wire.ts'
import { pruneExpired } from '../../audit/retention.ts'
import { certificateRetentionFloor } from '../../ca/certificate_retention.ts'
import { auditAnchorFile, loadConfig } from '../../config.ts'
import { tryAnchorKey } from '../../keys/anchor_key.ts'
import { anchorFile } from '../../storage/anchor_file.ts'
import type { AnchorCheck } from '../../storage/verify_all.ts'
import { systemClock } from '../../lib/clock.ts'
import { assertDataDirOwner } from '../data_dir_owner.ts'
import { auditLogExists, cliStoreOptions, openBrokerStore, sqliteAuditFile, tryAuditMacKey } from '../../storage/open_store.ts'
import { terminalQuoted, terminalText } from '../../lib/terminal_text.ts'
import { CliError, parse, positiveInt, type CommandIo, type Options } from '../command.ts'

const HELP = `Usage: condor-token-broker audit <list|export|verify|prune> [options]

  audit list [FILTERS] [--limit N] [--json]   newest first (default 50); --json prints JSON Lines
  audit export [FILTERS] [--out FILE]         every matching record in chain order, as JSON Lines
                                              {seq, hash, prev_hash, event}; stdout without --out
  audit verify                                check the whole hash chain with each record's MAC, and the
                                              revocations table against the token.revoked records; exit 1
                                              naming the first broken record and every revocation that
                                              differs, and (with the IDTOKEN key) the log against both
                                              sealed anchors, exit 1 when it departs from one; exit 3 when
                                              all else passed but the audit MAC key could not be read, so
                                              the MACs went unchecked; exit 1 when there is no log (SQLite:
                                              none is created)
  audit prune [--days N]                      apply retention now (default audit.retention_days); a checkpoint
                                              record keeps the remaining chain verifiable

FILTERS: --from T --to T (epoch seconds or RFC 3339) --caller IAM_SUB --sub ISSUED_SUB --role ROLE
         --jti JTI --decision allow|deny --type EVENT_TYPE --site SITE
Each subcommand takes only the options shown on its line (and --config); any other is refused.
Common options: --config FILE (or CTB_CONFIG)`

const FILTER_OPTIONS = {
  from: { type: 'string' }, to: { type: 'string' }, caller: { type: 'string' },
  sub: { type: 'string' }, role: { type: 'string' }, jti: { type: 'string' }, decision: { type: 'string' },
  type: { type: 'string' }, site: { type: 'string' },
} as const satisfies Options

/**
 * The options each subcommand takes. Each parses only its own, so another's is refused as unknown: with one table
 * for all, `audit verify --jti X` checked the whole log and `audit prune --jti X` pruned by retention, each as if
 * the option had been applied.
 */
const SUBCOMMAND_OPTIONS = {
  list: { config: { type: 'string' }, ...FILTER_OPTIONS, limit: { type: 'string' }, json: { type: 'boolean' } },
  export: { config: { type: 'string' }, ...FILTER_OPTIONS, out: { type: 'string' } },
  verify: { config: { type: 'string' } },
  prune: { config: { type: 'string' }, days: { type: 'string' } },
} as const satisfies Record<string, Options>
type AnyOptions = typeof SUBCOMMAND_OPTIONS.list & typeof SUBCOMMAND_OPTIONS.export & typeof SUBCOMMAND_OPTIONS.prune

export async function auditCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  if (sub !== 'list' && sub !== 'export' && sub !== 'verify' && sub !== 'prune') throw new CliError(`unknown audit command "${sub}" (see audit --help)`, 2)
  // Read through the union of the tables: an option this subcommand does not take is absent (refused by parse).
  const { values, positionals } = parse(rest, SUBCOMMAND_OPTIONS[sub], true) as ReturnType<typeof parse<AnyOptions>>
  if (values.help) { io.out(HELP); return 0 }
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}" (see audit --help)`, 2)
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  if (sub === 'prune') assertDataDirOwner(config.data_dir, 'audit prune')
  const filters = filtersFrom(values)
  // Opening a store creates the SQLite log or the PostgreSQL schema: a reading command pointed at the wrong
  // place (a relative data_dir from another working directory, a mistyped file, a DSN naming another
  // database) would make an empty log there and verify it as intact. Verify fails (a cron job must not read
  // "OK" from a log that is not there); list and export have nothing to show.
  if (sub !== 'prune' && !(await auditLogExists(config))) {
    const postgres = config.audit.store === 'postgres'
    const where = postgres ? 'no audit log in the PostgreSQL database audit.postgres.dsn names (it holds no broker tables)' : `no audit log at ${sqliteAuditFile(config)}`
    const check = postgres ? 'check the DSN' : 'check audit.sqlite.file and data_dir (a relative data_dir is taken from the working directory)'
    if (sub === 'verify') throw new CliError(`${where}: ${check}; audit verify only reads and creates none`, 1)
    io.err(`(${where}: no records)`)
    return 0
  }
  // Reading needs no key: without one, verify checks the chain but not the MACs, and says so. Prune writes.
  const mac = sub === 'prune' ? undefined : tryAuditMacKey(config)
  const store = await openBrokerStore(config, cliStoreOptions(mac))
  try {
    switch (sub) {
      case 'list': {
        const page = await store.query({ ...filters, limit: positiveInt('limit', values.limit) ?? 50 })
        for (const r of page.records) io.out(values.json ? JSON.stringify(wireRecord(r)) : line(r))
        if (page.nextCursor && !values.json) io.err('(more records match; narrow the filters or raise --limit)')
        return 0
      }
      case 'export': {
        const out = values.out ? createWriteStream(values.out, { flags: 'wx', mode: 0o600 }) : undefined
        const filtered = Object.values(filters).some((v) => v !== undefined)
        const done = await exportChain((from) => store.scan(from), filtered ? (r) => matches(r.event, filters) : undefined, async (r) => {
          const s = `${JSON.stringify(wireRecord(r))}\n`
          if (out) { if (!out.write(s)) await once(out, 'drain') } else io.out(s.slice(0, -1))
        })
        if (out) { out.end(); await once(out, 'finish') }
        if (done.prunedMeanwhile) {
          // Incomplete, and with the next record it would read a gap: not a file to keep or verify.
          if (out) rmSync(values.out!, { force: true })
          const { after, next } = done.prunedMeanwhile
          throw new CliError(`audit export stopped: retention pruned the log while it was read (after seq ${after} the log went on at seq ${next}); ${out ? `${values.out} was removed` : `the records above end at seq ${after}`}; run the export again`, 1)
        }
        if (out) io.err(`exported ${done.records} records to ${values.out}`)
        return 0
      }
      case 'verify': {
        // One pass: the revocation records are taken from hashed bodies as the chain is checked.
        // The anchors too when the IDTOKEN key that seals them can be read: only they show records cut off the
        // end, an older copy restored, or a chain written again in full (each whole on its own).
        const anchorKey = tryAnchorKey(config)
        const anchorPath = auditAnchorFile(config)
        const { chain: v, revocations: r, anchors } = await store.verifyAll('key' in anchorKey ? { anchorKey: anchorKey.key, anchorCopy: anchorFile(anchorPath) } : {})
        if (v.ok) io.out(`audit chain OK: ${v.records} records${v.records ? `, seq ${v.firstSeq}..${v.head.seq}` : ''}, head ${v.head.hash}`)
        else io.out(`audit chain BROKEN at record seq ${v.broken.seq}: ${v.broken.reason} (${v.records} records checked)`)
        // A broken chain names its MAC problem above; the key's absence is said either way.
        if (mac && 'problem' in mac) io.out(`audit MACs UNCHECKED: no audit MAC key (${mac.problem}); records appended by someone with database access would pass`)
        else if (mac && v.ok) io.out(macLine(v, mac.key.kid))
        // Compared even on a broken chain: the operator needs both findings to judge what was touched.
        if (r.ok) io.out(`revocations OK: ${r.revocations} rows match the audit chain`)
        else {
          for (const d of r.differences) io.out(`revocations DIFFER: ${d}`)
          if (r.unverified !== undefined) io.out(`revocations UNVERIFIED: the audit chain is broken, so it cannot vouch for the ${r.revocations} rows of the revocations table`)
        }
        if ('problem' in anchorKey) io.out(`audit anchors UNCHECKED: cannot read the IDTOKEN key that seals them (${anchorKey.problem}); records cut off the end or an older copy restored would pass`)
        for (const a of anchors ?? []) io.out(anchorLine(a, a.where === 'database' ? 'the database' : anchorPath))
        const departed = (anchors ?? []).some((a) => a.state === 'departs')
        // 3: nothing wrong was found, but the MACs could not be checked, so a forged record may be among them.
        return !(v.ok && r.ok) || departed ? 1 : mac && 'problem' in mac ? 3 : 0
      }
      default: {
        const days = positiveInt('days', values.days) ?? config.audit.retention_days
        if (days <= 0) throw new CliError('retention is off (audit.retention_days is 0); pass --days N', 2)
        // As the serving broker does: a pool CA's CRL keeps the certificate records it still lists.
        const floor = certificateRetentionFloor(store, { maxLifetime: config.ca.max_lifetime, crlLifetime: config.ca.crl_lifetime }, () => systemClock.now())
        const r = await pruneExpired(store, systemClock, days, floor)
        const held = r.heldBackTo === undefined ? ''
          : ` (held back from ${days} days to ${new Date(r.heldBackTo * 1000).toISOString()}: the pool CA's CRL may still list certificates recorded since)`
        const checkpoint = r.chunks === undefined ? `checkpoint is record ${r.checkpointSeq}` : `the last checkpoint is record ${r.checkpointSeq}`
        io.out(r.pruned > 0 ? `pruned ${r.pruned} records older than ${days} days${r.chunks !== undefined ? ` in ${r.chunks} chunks` : ''}${held}; ${checkpoint}` : `nothing to prune${held}`)
        return 0
      }
    }
  } finally {
    await store.close()
  }
}

/** What `audit verify` says of one sealed anchor, kept in `where`. */
function anchorLine(a: AnchorCheck, where: string): string {
  const head = `audit anchor in ${where}`
  switch (a.state) {
    case 'checked': return a.seq === 0 ? `${head}: checked (sealed over an empty log; nothing to compare yet)`
      : a.pruned ? `${head}: checked (the log reaches past seq ${a.seq}, where a check verified it; that record was pruned since)`
      : `${head}: checked (the log still holds seq ${a.seq} as a check verified it)`
    case 'departs': return `${head}: DEPARTS: ${a.reason}`
    case 'absent': return `${head}: absent`
    case 'otherKey': return `${head}: sealed under another key (the IDTOKEN key changed since it was sealed); not compared`
    default: return `${head}: unreadable (${a.reason}); not compared`
  }
}

/** What `audit verify` says of the MACs of a whole chain, checked with the key `kid`. */
function macLine(v: Extract<ChainVerification, { ok: true }>, kid: string): string {
  // An anchor may say MACs begin after the head (sealed on a log with none yet): none yet, all the same.
  if (v.macFrom === undefined || v.macFrom > v.head.seq) return `audit MACs: none yet (every record was written before MACs began; the next one the broker writes starts them)`
  const from = Math.max(v.macFrom, v.firstSeq)
  const before = v.macFrom > v.firstSeq ? `; records ${v.firstSeq}..${v.macFrom - 1} were written before MACs began` : ''
  return `audit MACs OK: every record from seq ${from} to ${v.head.seq} carries the broker's MAC (key ${kid})${before}`
}

type Filters = Omit<AuditQuery, 'limit' | 'cursor'>

function filtersFrom(v: Partial<Record<keyof AnyOptions, string | boolean>>): Filters {
  const s = (k: keyof AnyOptions) => (typeof v[k] === 'string' ? (v[k] as string) : undefined)
  const f: Filters = {}
  const from = s('from'); const to = s('to')
  if (from !== undefined) f.from = instant('from', from)
  if (to !== undefined) f.to = instant('to', to)
  if (s('caller') !== undefined) f.caller = s('caller')!
  if (s('sub') !== undefined) f.issuedSub = s('sub')!
  if (s('role') !== undefined) f.role = s('role')!
  if (s('jti') !== undefined) f.jti = s('jti')!
  if (s('site') !== undefined) f.site = s('site')!
  const d = s('decision')
  if (d !== undefined) {
    if (d !== 'allow' && d !== 'deny') throw new CliError('--decision must be allow or deny', 2)
    f.decision = d
  }
  if (s('type') !== undefined) f.type = s('type') as AuditEventType
  return f
}

function instant(name: string, s: string): number {
  const n = /^\d{1,12}$/.test(s) ? Number(s) : /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?$/i.test(s) ? Date.parse(s) / 1000 : NaN
  if (!Number.isFinite(n)) throw new CliError(`--${name} must be epoch seconds or an RFC 3339 date-time, got "${s}"`, 2)
  return Math.floor(n)
}

function matches(e: AuditEvent, f: Filters): boolean {
  return (f.from === undefined || e.time >= f.from) && (f.to === undefined || e.time <= f.to)
    && (f.caller === undefined || e.caller?.sub === f.caller) && (f.issuedSub === undefined || e.issuedSub === f.issuedSub)
    && (f.role === undefined || e.role === f.role) && (f.jti === undefined || e.jti === f.jti)
    && (f.decision === undefined || e.decision === f.decision) && (f.type === undefined || e.type === f.type)
    && (f.site === undefined || e.site === f.site)
}

/** A record's time in RFC 3339; one no date can hold (edited by hand) as it is, not thrown on. */
function isoTime(t: number): string {
  const d = new Date(t * 1000)
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace('.000Z', 'Z')
}

function line(r: AuditRecord): string {
  const e = r.event
  if (r.unreadable) {
    // Time and type are what the row's columns say: copies outside the hash, shown only to place the row.
    return [String(r.seq).padStart(7), isoTime(e.time), e.type.padEnd(15),
      `UNREADABLE: ${r.unreadable.reason} (edited by hand, or corrupted; run "audit verify")`].join('  ')
  }
  // String(): a body edited into JSON of the wrong types is still an event (readBody); it is printed as stored.
  const cols = [
    String(r.seq).padStart(7), isoTime(e.time), e.type.padEnd(15), String(e.decision ?? '-').padEnd(5),
    `role=${terminalText(e.role ?? '-')}`, `sub=${terminalText(e.issuedSub ?? '-')}`, `jti=${terminalText(e.jti ?? '-')}`, `caller=${terminalText(e.caller?.sub ?? '-')}`,
  ]
  if (e.site) cols.push(`site=${terminalText(e.site)}`)
  // A site, client, pilot-job or pilot-enrolment revocation has no role, sub or jti of its own: name what it took.
  const rev = revocationOf(e)
  if (rev) cols.push(`revoked=${rev}`)
  if (e.reason) cols.push(`reason=${terminalQuoted(e.reason)}`)
  return cols.join('  ')
}

/**
 * `KIND:VALUE` of a token.revoked record's revocation, or of the entry a token.unrevoked record lifted
 * (`detail.lift`), if it carries one. A lift recorded before lifts named their entry gives only its id: `#ID`
 * (revoke list --all resolves it).
 */
function revocationOf(e: AuditEvent): string | undefined {
  const r = e.type === 'token.unrevoked' ? e.detail?.lift : e.detail?.revocation
  if (typeof r !== 'object' || r === null) return undefined
  const { kind, value, id } = r as { kind?: unknown; value?: unknown; id?: unknown }
  if (typeof kind !== 'string' || typeof value !== 'string') return e.type === 'token.unrevoked' && typeof id === 'number' ? `#${id}` : undefined
  // A revoked sub is whatever a caller's token said: quoted unless plainly printable, as reasons are.
  const text = `${kind}:${value}`
  return /^[\x21-\x7e]+$/.test(text) ? text : terminalQuoted(text)
}
