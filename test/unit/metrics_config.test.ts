import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'

function yamlFile(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'ctb-metrics-cfg-')), 'broker.yaml')
  writeFileSync(f, text)
  return f
}

const errorOf = (f: () => unknown): string => {
  try { f() } catch (e) { return (e as Error).message }
  return ''
}

describe('metrics: config section', () => {
  it('defaults to an open /metrics with process metrics and a rotation schedule', () => {
    expect(loadConfig({ env: {} }).metrics).toEqual({
      enabled: true, auth: 'none', process: true, key_rotation_days: { idtoken: 365, scitoken: 180 },
    })
  })

  it('reads every key from the file and from CTB_METRICS_* variables', () => {
    const f = yamlFile('metrics:\n  auth: bearer\n  bearer_token_file: /etc/ctb/metrics.token\n  process: false\n  key_rotation_days:\n    idtoken: 0\n')
    expect(loadConfig({ file: f, env: { CTB_METRICS_KEY_ROTATION_DAYS_SCITOKEN: '30' } }).metrics).toEqual({
      enabled: true, auth: 'bearer', bearer_token_file: '/etc/ctb/metrics.token', process: false, key_rotation_days: { idtoken: 0, scitoken: 30 },
    })
    expect(loadConfig({ env: { CTB_METRICS_ENABLED: 'false' } }).metrics.enabled).toBe(false)
    expect(loadConfig({ env: { CTB_METRICS_AUTH: 'admin' } }).metrics.auth).toBe('admin')
  })

  it('refuses an unknown key at its line, nested or not', () => {
    const f = yamlFile('metrics:\n  enabeld: false\n  key_rotation_days:\n    jwt: 90\n')
    expect(errorOf(() => loadConfig({ file: f, env: {} })).split('\n').slice(1)).toEqual([
      `  ${f}:2:3: metrics: unknown key "enabeld"`,
      `  ${f}:4:5: metrics.key_rotation_days: unknown key "jwt"`,
    ])
    expect(errorOf(() => loadConfig({ env: { CTB_METRICS_TOKEN_FILE: '/x' } }))).toMatch(/CTB_METRICS_TOKEN_FILE: unknown configuration variable/)
  })

  it('refuses an unknown auth mode, a bearer mode without its file, and a file without the bearer mode', () => {
    expect(errorOf(() => loadConfig({ env: { CTB_METRICS_AUTH: 'basic' } }))).toMatch(/metrics\.auth: .*\(from CTB_METRICS_AUTH\)/)
    expect(errorOf(() => loadConfig({ env: { CTB_METRICS_AUTH: 'bearer' } }))).toMatch(/metrics\.bearer_token_file: metrics\.auth "bearer" needs metrics\.bearer_token_file/)
    expect(errorOf(() => loadConfig({ env: { CTB_METRICS_BEARER_TOKEN_FILE: '/etc/t' } }))).toMatch(/metrics\.bearer_token_file: .*applies only to metrics\.auth "bearer"/)
  })

  it('refuses values of the wrong type', () => {
    expect(errorOf(() => loadConfig({ env: { CTB_METRICS_ENABLED: 'yes' } }))).toMatch(/metrics\.enabled: must be true or false/)
    expect(errorOf(() => loadConfig({ env: { CTB_METRICS_KEY_ROTATION_DAYS_IDTOKEN: '-1' } }))).toMatch(/metrics\.key_rotation_days\.idtoken: must be at least 0/)
  })
})
