import { existsSync, lstatSync, readdirSync, statSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Manifest } from '../../src/clients/provision/render.ts'
import { writeBundles } from '../../src/clients/provision/write_bundles.ts'
import { tempDir } from '../support/tmp.ts'

// docs/provisioning.md: "--out DIR must not exist. Everything is written into a temporary directory beside
// it, then renamed in one step; on failure nothing is left". A symlink at --out is an entry that exists,
// even one pointing nowhere: output is never written through it.
const manifest = { template: { name: 't', version: '1' }, broker: 'https://b', trust_domain: 'td', created_at: 0, bundles: ['cm'], tokens: [], certificates: [], outputs: {} } as Manifest
const bundles = [{ name: 'cm', files: [{ path: 'tokens.d/NEGOTIATOR_auto_generated_token', content: 'secret\n', mode: 0o600 }] }]

describe('provision render output', () => {
  it('writes bundles with their modes, in a directory only the operator reads', () => {
    const out = join(tempDir(), 'cluster')
    writeBundles(out, bundles, manifest)
    expect(statSync(out).mode & 0o777).toBe(0o700)
    expect(statSync(join(out, 'cm', 'tokens.d', 'NEGOTIATOR_auto_generated_token')).mode & 0o777).toBe(0o600)
  })

  it('refuses an --out that is a symlink pointing nowhere, leaving nothing behind', () => {
    const dir = tempDir()
    const elsewhere = join(tempDir(), 'elsewhere')
    const out = join(dir, 'cluster')
    symlinkSync(elsewhere, out)
    expect(() => writeBundles(out, bundles, manifest)).toThrow(`${out} exists; choose a new --out directory (output is never merged into an old one)`)
    expect(existsSync(elsewhere)).toBe(false)
    expect(lstatSync(out).isSymbolicLink()).toBe(true)
    expect(readdirSync(dir)).toEqual(['cluster'])
  })
})
