import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { PolicyHolder } from '../../src/policy/policy_holder.ts'
import { tempDir } from '../support/tmp.ts'

// A policy_dir removed, or renamed away, between the listing and the checks on the directory itself (a
// ConfigMap swap, an admin's mv) makes stat or realpath fail after readdir succeeded. No race is needed to
// show it: the fs calls on the directory fail, as the kernel would make them, once `vanished` names it.
const fail = vi.hoisted(() => ({ vanished: '', code: 'ENOENT' }))
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>()
  const guard = <F extends (p: never, ...rest: never[]) => unknown>(f: F) => ((p: Parameters<F>[0], ...rest: never[]) => {
    if (fail.vanished !== '' && String(p) === fail.vanished) throw Object.assign(new Error(`${fail.code}: ${String(p)}`), { code: fail.code })
    return f(p, ...rest)
  }) as F
  return { ...fs, statSync: guard(fs.statSync), realpathSync: Object.assign(guard(fs.realpathSync), { native: guard(fs.realpathSync.native) }) }
})

const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'pool.example.org', vars: {}, scitokenProfile: 'wlcg', maxLifetime: {} }
const POLICY = `version: 1
rules:
  - id: mon
    match: { issuer: "https://iam.example.org/", client_id: [mon] }
    grants:
      - { role: monitoring, identity: monitor@pool.example.org, token_kinds: [idtoken], authz: [READ], lifetime: { default: 1h, max: 1d } }
`

describe('a policy_dir that vanishes during a reload', () => {
  it.each(['ENOENT', 'ENOTDIR', 'EACCES'])('refuses the reload with %s named and keeps the policy in force', (code) => {
    const dir = tempDir()
    writeFileSync(join(dir, 'p.yaml'), POLICY)
    const holder = new PolicyHolder({ dir, context: CTX, watch: false, sighup: false })
    const before = holder.current
    Object.assign(fail, { vanished: dir, code })
    try {
      const event = holder.reload('sighup')
      expect(event).toEqual({ ok: false, trigger: 'sighup', previousDigest: before.digest, errors: [`${dir}: cannot read policy directory: ${code}`] })
      expect(holder.current).toBe(before)
    } finally {
      fail.vanished = ''
      holder.close()
    }
  })
})
