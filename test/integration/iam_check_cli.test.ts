import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamBrokerSettings, devIamTrustedIssuer } from '../../src/dev_iam/broker_settings.ts'
import { startDevIam, type RunningDevIam } from '../../src/dev_iam/start_dev_iam.ts'
import { writeSecretFileAtomic } from '../../src/lib/secure_file.ts'
import { cli } from '../support/cli.ts'
import { refusedUrl } from '../support/loopback_failures.ts'
import { tempDir } from '../support/tmp.ts'

describe('iam check', () => {
  let devIam: RunningDevIam
  beforeAll(async () => { devIam = await startDevIam({ port: 0 }) })
  afterAll(async () => { await devIam.close() })

  /** The development setup as serve leaves it: no iam.issuers, the dev IAM on dev_iam.port, its broker secret written. */
  function devSetup(secret?: string): NodeJS.ProcessEnv {
    const data = tempDir()
    const secretFile = join(data, 'dev-iam', 'broker.secret')
    devIamTrustedIssuer(devIamBrokerSettings(devIam), secretFile)
    if (secret !== undefined) writeSecretFileAtomic(secretFile, `${secret}\n`)
    return { CTB_DATA_DIR: data, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_DEV_IAM_PORT: new URL(devIam.issuer).port }
  }

  it('passes against the running development IAM: discovery, JWKS, introspection with the broker client', async () => {
    const r = await cli(['iam', 'check'], devSetup())
    expect(r.out.split('\n')).toEqual([
      `${devIam.issuer} discovery ok ${devIam.discoveryUrl}`,
      `${devIam.issuer} jwks ok ${devIam.jwksUri}`,
      `${devIam.issuer} introspection ok ${devIam.introspectionEndpoint}`,
    ])
    expect(r.code).toBe(0)
  })

  it('fails introspection when IAM refuses the broker client credentials', async () => {
    const r = await cli(['iam', 'check'], devSetup('not-the-secret'))
    expect(r.out).toContain(`${devIam.issuer} jwks ok`)
    // The development IAM answers a bad client secret as IAM does: 401 with a WWW-Authenticate challenge.
    expect(r.out).toContain(`${devIam.issuer} introspection FAIL ${devIam.introspectionEndpoint}: HTTP 401 challenge`)
    expect(r.err).toBe('1 IAM check failed')
    expect(r.code).toBe(1)
  })

  it('fails with the cause and exit 1 when the configured IAM port is closed', async () => {
    const url = await refusedUrl('/')
    const dir = tempDir()
    const file = join(dir, 'broker.yaml')
    writeFileSync(file, `data_dir: ${join(dir, 'data')}\ntrust_domain: pool.example.org\niam:\n  issuers:\n    - issuer: ${url}\n`)
    const r = await cli(['iam', 'check', '--config', file], {})
    expect(r.out.split('\n')).toEqual([
      `${url} discovery FAIL ${url}.well-known/openid-configuration: refused`,
      `${url} jwks FAIL: not tried: discovery failed`,
    ])
    expect(r.err).toBe('2 IAM checks failed')
    expect(r.code).toBe(1)
  })

  it('is a usage error without a subcommand it knows', async () => {
    expect((await cli(['iam', 'frobnicate'], {})).code).toBe(2)
  })
})
