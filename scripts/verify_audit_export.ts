#!/usr/bin/env node
/**
 * Checks an `audit export` (JSON Lines) without the broker: written only from docs/audit.md ("Checking an
 * export by hand"), sharing no code with src/, so that the documented hash format is pinned by something
 * other than the code that produces it. Standalone on purpose: copy this one file to an auditor's machine.
 *
 *   node scripts/verify_audit_export.ts export.jsonl [--head SEQ:HASH]
 *   condor-token-broker audit export | node scripts/verify_audit_export.ts -
 *
 * Exit 0 and `export OK: …` when every line is intact and linked; exit 1 and `export BROKEN at line N …`
 * naming the first bad line; exit 2 on usage errors.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'

export const GENESIS = '0'.repeat(64)

export type ExportVerdict =
  | { ok: true; records: number; firstSeq: number; lastSeq: number; lastHash: string }
  | { ok: false; line: number; reason: string }

/** The body the broker hashed for `event`, by the rules in docs/audit.md. */
export function canonicalBody(value: unknown): string {
  if (value === null) return 'null'
  if (value === true) return 'true'
  if (value === false) return 'false'
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('a number is not finite')
    return String(value)
  }
  if (typeof value === 'string') return quote(value)
  if (Array.isArray(value)) return `[${value.map(canonicalBody).join(',')}]`
  if (typeof value === 'object') {
    const members = Object.entries(value as Record<string, unknown>)
    return `{${orderKeys(members.map(([k]) => k)).map((k) => `${quote(k)}:${canonicalBody((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  throw new Error(`a value of type ${typeof value} has no JSON form`)
}

/** Array-index keys first in numeric order, then the rest by UTF-16 code units (docs/audit.md). */
function orderKeys(keys: string[]): string[] {
  const isIndex = (k: string) => /^(0|[1-9][0-9]*)$/.test(k) && Number(k) < 2 ** 32 - 1
  const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)
  const idx = keys.filter(isIndex).sort((a, b) => Number(a) - Number(b))
  return [...idx, ...keys.filter((k) => !isIndex(k)).sort(byCodeUnits)]
}

const SHORT: Record<number, string> = { 0x08: '\\b', 0x09: '\\t', 0x0a: '\\n', 0x0c: '\\f', 0x0d: '\\r', 0x22: '\\"', 0x5c: '\\\\' }

function quote(s: string): string {
  let out = '"'
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    const hex = () => `\\u${c.toString(16).padStart(4, '0')}`
    if (SHORT[c] !== undefined) out += SHORT[c]
    else if (c < 0x20) out += hex()
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff) { out += s[i]! + s[i + 1]!; i++ }
    else if (c >= 0xd800 && c <= 0xdfff) out += hex() // a lone surrogate
    else out += s[i]!
  }
  return `${out}"`
}

/** hex(SHA-256(UTF-8 of `seq LF prev_hash LF body`)). */
export function recordHashOf(seq: number, prevHash: string, body: string): string {
  return createHash('sha256').update(`${seq}\n${prevHash}\n${body}`, 'utf8').digest('hex')
}

/** Verifies the lines of an unfiltered export; `head` is a seq and hash kept elsewhere, to catch a cut tail. */
export function verifyExport(text: string, head?: { seq: number; hash: string }): ExportVerdict {
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  let prev: { seq: number; hash: string } | undefined
  let first: { seq: number; prevHash: string } | undefined
  let anchored = false
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1
    const bad = (reason: string): ExportVerdict => ({ ok: false, line: n, reason })
    let rec: { seq?: unknown; hash?: unknown; prev_hash?: unknown; event?: unknown }
    try { rec = JSON.parse(lines[i]!) } catch { return bad('not valid JSON') }
    const { seq, hash, prev_hash: prevHash, event } = rec ?? {}
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return bad('seq is not a positive integer')
    if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) return bad('hash is not 64 lowercase hex digits')
    if (typeof prevHash !== 'string' || !/^[0-9a-f]{64}$/.test(prevHash)) return bad('prev_hash is not 64 lowercase hex digits')
    if (event === null || typeof event !== 'object' || Array.isArray(event)) return bad('event is not an object')
    if (recordHashOf(seq, prevHash, canonicalBody(event)) !== hash) return bad(`seq ${seq}: hash does not match the record`)
    if (prev === undefined) {
      first = { seq, prevHash }
      if (seq === 1) {
        if (prevHash !== GENESIS) return bad('seq 1 does not start from the genesis hash')
        anchored = true
      }
    } else {
      if (seq !== prev.seq + 1) return bad(`seq ${seq} follows seq ${prev.seq} (a record is missing or out of order)`)
      if (prevHash !== prev.hash) return bad(`seq ${seq}: prev_hash is not the hash of seq ${prev.seq}`)
    }
    const ev = event as { type?: unknown; detail?: { prunedThroughSeq?: unknown; prunedLastHash?: unknown } }
    if (ev.type === 'audit.checkpoint' && first && first.seq > 1
      && ev.detail?.prunedThroughSeq === first.seq - 1 && ev.detail.prunedLastHash === first.prevHash) anchored = true
    prev = { seq, hash }
  }
  if (!prev || !first) return { ok: false, line: 0, reason: 'the export is empty' }
  if (!anchored) return { ok: false, line: 1, reason: `starts at seq ${first.seq} and no checkpoint vouches for the records before it` }
  if (head && (head.seq !== prev.seq || head.hash !== prev.hash)) {
    return { ok: false, line: lines.length, reason: `ends at seq ${prev.seq} with hash ${prev.hash}, not at the expected head seq ${head.seq} ${head.hash}` }
  }
  return { ok: true, records: lines.length, firstSeq: first.seq, lastSeq: prev.seq, lastHash: prev.hash }
}

function main(argv: string[]): number {
  const usage = 'usage: verify_audit_export.ts FILE|- [--head SEQ:HASH]'
  const headAt = argv.indexOf('--head')
  let head: { seq: number; hash: string } | undefined
  if (headAt >= 0) {
    const m = /^(\d+):([0-9a-f]{64})$/.exec(argv[headAt + 1] ?? '')
    if (!m) { console.error(usage); return 2 }
    head = { seq: Number(m[1]), hash: m[2]! }
    argv = argv.filter((_, i) => i !== headAt && i !== headAt + 1)
  }
  if (argv.length !== 1) { console.error(usage); return 2 }
  let text: string
  try { text = readFileSync(argv[0] === '-' ? 0 : argv[0]!, 'utf8') } catch (err) { console.error(`cannot read ${argv[0]}: ${(err as Error).message}`); return 2 }
  const v = verifyExport(text, head)
  if (v.ok) { console.log(`export OK: ${v.records} records, seq ${v.firstSeq}..${v.lastSeq}, last hash ${v.lastHash}`); return 0 }
  console.log(`export BROKEN at line ${v.line}: ${v.reason}`)
  return 1
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = main(process.argv.slice(2))
