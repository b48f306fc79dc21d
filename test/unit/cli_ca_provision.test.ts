import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

describe('condor-token-broker ca and provision on the command line', () => {
  it('ca init creates the CA once and refuses to overwrite it', async () => {
    const data = join(tempDir(), 'data')
    const e = { CTB_DATA_DIR: data, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const first = await cli(['ca', 'init'], e)
    expect(first.code, first.err).toBe(0)
    expect(first.out).toMatch(/^pool CA created: key .*ca\.key \(0600, never copy it\)/)
    expect(statSync(join(data, 'ca', 'ca.key')).mode & 0o777).toBe(0o600)
    const again = await cli(['ca', 'init'], e)
    expect(again.code).toBe(1)
    expect(again.err).toBe(`condor-token-broker: ${join(data, 'ca', 'ca.key')} exists; the pool CA is never overwritten (move it away first to start a new CA)`)
  })

  it('provision reports a template mistake as one line with its position, before any network call', async () => {
    const r = await cli(['provision', 'render', 'test/fixtures/provision/unknown_key.yaml', '--inputs', 'examples/provisioning/inputs.yaml', '--broker', 'https://127.0.0.1:1', '--out', join(tempDir(), 'out')], { BEARER_TOKEN: 'x' })
    expect(r.code).toBe(1)
    expect(r.err).toBe('condor-token-broker: test/fixtures/provision/unknown_key.yaml:19:7: unknown key "flavor"')
  })

  it.each([['not a JWT', 'x'], ['a JWT whose payload is not an object', `a.${Buffer.from('null').toString('base64url')}.c`]])('provision plan refuses a bearer token that is %s in one line', async (_, token) => {
    const r = await cli(['provision', 'plan', 'examples/provisioning/hybrid-pool.yaml', '--inputs', 'examples/provisioning/inputs.yaml', '--broker', 'https://127.0.0.1:1'], { BEARER_TOKEN: token })
    expect(r.code).toBe(1)
    expect(r.err).toBe('condor-token-broker: bearer token: not a JWT with a claims object; provision plan needs an IAM access token')
  })

  it('provision refuses an unreadable --ca-file in one line, as a user mistake', async () => {
    const file = join(tempDir(), 'manifest.json')
    writeFileSync(file, '{"template":{"name":"t","version":"1"},"tokens":[],"certificates":[]}')
    const missing = join(tempDir(), 'no-ca.pem')
    const r = await cli(['provision', 'teardown', '--manifest', file, '--broker', 'https://127.0.0.1:1', '--ca-file', missing], { BEARER_TOKEN: 'x' })
    expect(r.code).toBe(1)
    expect(r.err).toBe(`condor-token-broker: cannot read --ca-file ${missing}: ENOENT`)
  })

  it.each([
    ['null', 'null'],
    ['no template', '{"tokens":[],"certificates":[]}'],
    ['a token that is not one', '{"template":{"name":"t","version":"1"},"tokens":[null],"certificates":[]}'],
    ['a certificate without a serial', '{"template":{"name":"t","version":"1"},"tokens":[],"certificates":[{"node":"cm"}]}'],
    // Whether teardown sends a token's exp depends on its kind: a pilot enrolment credential's revocation must
    // outlast its pilots' tokens (docs/provisioning.md), so a token of no known kind is not guessed at.
    ['a token of no known kind', '{"template":{"name":"t","version":"1"},"tokens":[{"jti":"j","node":"hpc","exp":1800000000}],"certificates":[]}'],
  ])('provision teardown refuses a manifest with %s in one line, before any network call', async (_, text) => {
    const file = join(tempDir(), 'manifest.json')
    writeFileSync(file, text)
    const r = await cli(['provision', 'teardown', '--manifest', file, '--broker', 'https://127.0.0.1:1'], { BEARER_TOKEN: 'x' })
    expect(r.code).toBe(1)
    expect(r.err).toBe(`condor-token-broker: ${file}: not a provisioning manifest (a template name, tokens with jti, node and kind, certificates with serial and node)`)
  })

  // The broker accepts a revocation of any jti, so a teardown sent to another broker than the one that
  // issued the manifest's tokens would report them revoked while they stay valid where they count.
  it('provision teardown refuses a manifest from another broker in one line, before any network call', async () => {
    const file = join(tempDir(), 'manifest.json')
    writeFileSync(file, JSON.stringify({ template: { name: 't', version: '1' }, broker: 'https://broker-a.example.org', tokens: [], certificates: [] }))
    const r = await cli(['provision', 'teardown', '--manifest', file, '--broker', 'https://127.0.0.1:1'], { BEARER_TOKEN: 'x' })
    expect(r.code).toBe(1)
    expect(r.err).toBe(`condor-token-broker: ${file}: its tokens and certificates were issued by https://broker-a.example.org, not --broker https://127.0.0.1:1 (revoking them there would end nothing)`)
  })

  // WHATWG URL: a host name's case and the scheme's default port do not make another URL, so a manifest
  // written with https://Broker.example.org:443/ names the broker reached as https://broker.example.org.
  it('provision teardown takes a manifest naming the same broker with another host case and the default port', async () => {
    const file = join(tempDir(), 'manifest.json')
    writeFileSync(file, JSON.stringify({ template: { name: 't', version: '1' }, broker: 'https://Broker.example.org:443/', tokens: [], certificates: [] }))
    const r = await cli(['provision', 'teardown', '--manifest', file, '--broker', 'https://broker.example.org'], { BEARER_TOKEN: 'x' })
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toBe('revoked 0 tokens and 0 certificates')
  })

  it('provision teardown still refuses a manifest from the same host on another port or path', async () => {
    for (const other of ['https://broker.example.org:8443', 'https://broker.example.org/other']) {
      const file = join(tempDir(), 'manifest.json')
      writeFileSync(file, JSON.stringify({ template: { name: 't', version: '1' }, broker: other, tokens: [], certificates: [] }))
      const r = await cli(['provision', 'teardown', '--manifest', file, '--broker', 'https://broker.example.org'], { BEARER_TOKEN: 'x' })
      expect(r.code).toBe(1)
      expect(r.err).toBe(`condor-token-broker: ${file}: its tokens and certificates were issued by ${other}, not --broker https://broker.example.org (revoking them there would end nothing)`)
    }
  })

  // An --out under a regular file can never be written: a user mistake, told in one line before the broker
  // is asked for anything (not an internal error).
  it('provision render refuses an --out whose parent is a file in one line, before any network call', async () => {
    const parent = join(tempDir(), 'a-file')
    writeFileSync(parent, '')
    const out = join(parent, 'out')
    const r = await cli(['provision', 'render', 'examples/provisioning/hybrid-pool.yaml', '--inputs', 'examples/provisioning/inputs.yaml', '--broker', 'https://127.0.0.1:1', '--out', out], { BEARER_TOKEN: 'x' })
    expect(r.code).toBe(1)
    expect(r.err).toBe(`condor-token-broker: cannot use --out ${out}: ENOTDIR (a directory is created there)`)
  })
})
