import { hash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { auditMacKey, macProblem, recordMac } from '../../src/audit/record_mac.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

/** HMAC-SHA256 as RFC 2104 defines it, from two plain SHA-256 passes: independent of node's createHmac. */
function rfc2104(key: Buffer, message: Buffer): string {
  const pad = (byte: number) => Buffer.from(Array.from({ length: 64 }, (_, i) => (key[i] ?? 0) ^ byte))
  const inner = hash('sha256', Buffer.concat([pad(0x36), message]), 'buffer')
  return hash('sha256', Buffer.concat([pad(0x5c), inner]), 'hex')
}

describe('record MACs', () => {
  const key = auditMacKey(Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex'))
  const recordHash = 'cb85e025'.repeat(8)

  it('is kid, a colon and HMAC-SHA256 over the 32 bytes of the record hash', () => {
    expect(key.kid).toBe(hash('sha256', Buffer.concat([Buffer.from('condor-token-broker audit MAC key id\n'), key.key]), 'hex').slice(0, 16))
    expect(recordMac(key, recordHash)).toBe(`${key.kid}:${rfc2104(key.key, Buffer.from(recordHash, 'hex'))}`)
  })

  it('accepts its own MAC and names what is wrong with any other', () => {
    expect(macProblem(key, recordHash, recordMac(key, recordHash))).toBeUndefined()
    expect(macProblem(key, 'ab'.repeat(32), recordMac(key, recordHash))).toBe('MAC does not match the record (written outside the broker, or its MAC edited)')
    const other = auditMacKey(Buffer.alloc(32, 9))
    expect(macProblem(key, recordHash, recordMac(other, recordHash))).toBe(`MAC names key ${other.kid}, not the audit MAC key ${key.kid} (written outside the broker, or the key was replaced)`)
    expect(macProblem(key, recordHash, 'garbage')).toBe('MAC is not well-formed (written outside the broker)')
  })

  it('the memory store MACs what it appends, from a record that opens the MAC era', async () => {
    const store = new MemoryStore({ auditMac: key })
    await store.record({ type: 'policy.reloaded', time: 1_800_000_000, decision: 'allow' })
    const all = []
    for await (const r of store.scan()) all.push(r.event.type)
    expect(all).toEqual(['audit.macs_started', 'policy.reloaded'])
    expect(await store.verify()).toMatchObject({ ok: true, records: 2, macFrom: 1 })
    await store.close()
  })
})
