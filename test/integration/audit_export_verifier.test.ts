import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { verifyExport } from '../../scripts/verify_audit_export.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'
import { issued } from './audit_log.contract.ts'

/**
 * The hash format is judged by scripts/verify_audit_export.ts, written from docs/audit.md alone: a change
 * to the separator, field order, key order or string escaping in src/audit/chain.ts turns this red.
 */
const SCRIPT = join(import.meta.dirname, '../../scripts/verify_audit_export.ts')

let exported = ''
let head = { seq: 0, hash: '' }

beforeAll(async () => {
  const dataDir = join(tempDir(), 'data')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
  await store.record(issued(1))
  // A denial whose text exercises every escaping rule, and a detail with array-index-like keys.
  await store.record(issued(2, {
    type: 'token.denied', decision: 'deny',
    reason: 'invalid_target: "role" \\ not/granted\ttab\nnl\u0001 é ☃ 😀 \u2028 \ud800 \u007f',
    detail: { b: [1, -2, 0.5, 1e21, true, null], 10: 'ten', 2: 'two', a: { z: '', y: {} }, B: 'upper', é: 'e acute' },
  }))
  await store.close()
  expect((await cli(['revoke', '--role', 'pilot', '--reason', 'factory "A" compromised'], env)).code).toBe(0)
  expect((await cli(['revoke', '--jti', 'jti-1'], env)).code).toBe(0)
  const v = await cli(['audit', 'verify'], env)
  const m = /head ([0-9a-f]{64})$/m.exec(v.out)
  expect(m).not.toBeNull()
  // The two revocations by the CLI, the first record written with the audit MAC key opening the MAC era.
  head = { seq: 5, hash: m![1]! }
  const file = join(tempDir(), 'export.jsonl')
  expect((await cli(['audit', 'export', '--out', file], env)).code).toBe(0)
  exported = readFileSync(file, 'utf8')
})

describe('standalone audit export verifier (written from docs/audit.md)', () => {
  it('accepts a real export of issuance, denial and revocations, ending at the head audit verify printed', () => {
    const types = exported.trimEnd().split('\n').map((l) => (JSON.parse(l) as { event: { type: string } }).event.type)
    expect(types).toEqual(['token.issued', 'token.denied', 'audit.macs_started', 'token.revoked', 'token.revoked'])
    expect(verifyExport(exported, head)).toEqual({ ok: true, records: 5, firstSeq: 1, lastSeq: 5, lastHash: head.hash })
  })

  it('runs as a program on a file and on stdin', () => {
    const file = join(tempDir(), 'export.jsonl')
    writeFileSync(file, exported)
    const out = execFileSync(process.execPath, [SCRIPT, file, '--head', `${head.seq}:${head.hash}`], { encoding: 'utf8' })
    expect(out).toBe(`export OK: 5 records, seq 1..5, last hash ${head.hash}\n`)
    expect(execFileSync(process.execPath, [SCRIPT, '-'], { input: exported, encoding: 'utf8' })).toMatch(/^export OK: 5 records/)
  })

  const lines = () => exported.trimEnd().split('\n')
  const join_ = (ls: string[]) => `${ls.join('\n')}\n`

  it.each([
    ['one changed byte in an event', () => exported.replace('"jti-1"', '"jti-7"'), 1, /seq 1: hash does not match/],
    ['one changed byte in a hash', () => { const ls = lines(); ls[1] = ls[1]!.replace(/"hash":"(.)/, (_, c: string) => `"hash":"${c === 'a' ? 'b' : 'a'}`); return join_(ls) }, 2, /seq 2: hash does not match/],
    ['a deleted line', () => join_(lines().filter((_, i) => i !== 1)), 2, /seq 3 follows seq 1/],
    ['reordered lines', () => { const ls = lines(); return join_([ls[0]!, ls[2]!, ls[1]!, ls[3]!]) }, 2, /seq 3 follows seq 1/],
    ['a deleted first line', () => join_(lines().slice(1)), 1, /starts at seq 2 and no checkpoint/],
    ['a cut tail, against the head kept elsewhere', () => join_(lines().slice(0, 3)), 3, /ends at seq 3 .* expected head seq 5/],
  ])('rejects %s', (_name, tamper, line, reason) => {
    expect(verifyExport(tamper(), head)).toEqual({ ok: false, line, reason: expect.stringMatching(reason) })
  })

  it('exits 1 naming the line when run as a program on a tampered export', () => {
    const bad = join(tempDir(), 'bad.jsonl')
    writeFileSync(bad, join_(lines().filter((_, i) => i !== 2)))
    let status = 0
    let stdout = ''
    try { execFileSync(process.execPath, [SCRIPT, bad], { encoding: 'utf8' }) } catch (err) {
      ({ status, stdout } = err as { status: number; stdout: string })
    }
    expect(status).toBe(1)
    expect(stdout).toBe('export BROKEN at line 3: seq 4 follows seq 2 (a record is missing or out of order)\n')
  })
})
