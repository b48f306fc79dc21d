import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'

function yamlFile(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'ctb-cfg-')), 'broker.yaml')
  writeFileSync(f, text)
  return f
}

describe('loadConfig', () => {
  it('serves on embedded defaults with no file', () => {
    const c = loadConfig({ env: {} })
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8443 })
    expect(c.tls.mode).toBe('auto')
    expect(c.issuer).toBe('https://localhost:8443')
    expect(c.idtoken.key).toBe('broker1')
  })
  it('reads YAML and lets CTB_* variables override leaves', () => {
    const f = yamlFile('trust_domain: pool.example.org\nlisten:\n  port: 9000\n')
    const c = loadConfig({ file: f, env: { CTB_LISTEN_PORT: '9100', CTB_SCITOKEN_ALG: 'RS256' } })
    expect(c.trust_domain).toBe('pool.example.org')
    expect(c.listen.port).toBe(9100)
    expect(c.scitoken.alg).toBe('RS256')
  })
  it('names each bad field on its own line without echoing values', () => {
    const f = yamlFile('issuer: http://secret-host.example\nlisten:\n  port: nope\n')
    let msg = ''
    try { loadConfig({ file: f, env: { CTB_SCITOKEN_ALG: 'HS256-supersecret' } }) } catch (e) { msg = (e as Error).message }
    expect(msg).toMatch(/^ {2}issuer: /m)
    expect(msg).toMatch(/^ {2}listen\.port: /m)
    expect(msg).toMatch(/^ {2}scitoken\.alg: /m)
    expect(msg).not.toContain('supersecret')
    expect(msg).not.toContain('nope')
  })
  it('reports YAML syntax errors with a line number', () => {
    const f = yamlFile('listen:\n  port: [1,\n')
    expect(() => loadConfig({ file: f, env: {} })).toThrow(/broker\.yaml:\d+:\d+/)
  })
  it('rejects a trust domain with a comma', () => {
    expect(() => loadConfig({ env: { CTB_TRUST_DOMAIN: 'a,b' } })).toThrow(/trust_domain/)
  })
  it('bounds slow clients by default and refuses a headers timeout beyond the request timeout', () => {
    const c = loadConfig({ env: {} })
    expect(c.http).toEqual({
      headers_timeout_ms: 10_000, request_timeout_ms: 30_000, keep_alive_timeout_ms: 5_000,
      max_headers_count: 100, max_header_bytes: 16_384, max_connections: 1024, max_connections_per_client: 64,
    })
    expect(loadConfig({ env: { CTB_HTTP_REQUEST_TIMEOUT_MS: '2000', CTB_HTTP_HEADERS_TIMEOUT_MS: '1000' } }).http.request_timeout_ms).toBe(2000)
    expect(() => loadConfig({ env: { CTB_HTTP_REQUEST_TIMEOUT_MS: '1000', CTB_HTTP_HEADERS_TIMEOUT_MS: '2000' } })).toThrow(/http\.headers_timeout_ms/)
  })
  it('requires a public issuer behind a TLS proxy', () => {
    expect(() => loadConfig({ env: { CTB_TLS_MODE: 'off' } })).toThrow(/issuer/)
  })
})

describe('config/broker.example.yaml', () => {
  it('is a valid configuration that documents every top-level section', () => {
    const c = loadConfig({ file: 'config/broker.example.yaml', env: {} })
    expect(c.issuer).toBe('https://broker.example.org')
    const text = readFileSync('config/broker.example.yaml', 'utf8')
    for (const key of Object.keys(c).filter((k) => !['source', 'issuerDefaulted'].includes(k))) expect(text).toMatch(new RegExp(`^${key}:`, 'm'))
  })
})
