import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { renderCluster } from '../../src/clients/provision/render.ts'
import { readCondorConfig } from '../support/condor_config_read.ts'

// A bundle whose 50-broker.conf names CERTIFICATE_MAPFILE must carry that file, and each mapfile holds a rule
// for every issuer whose users the node's ALLOW lists admit (docs/htcondor-tokens.md §5.5: with no matching
// rule SCITOKENS authentication fails). The central manager admits the users of every schedd in ALLOW_READ;
// the config says SciTokens the broker mints are accepted too. Expected lines are written from §5.5's form.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>

const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
let n = 0
const broker = {
  base: 'https://broker.example.org',
  caCertificate: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
  metadata: async () => ({ issuer: 'https://broker.example.org' }),
  daemonToken: async (role: string) => ({ token: jwt({ iss: 'pool.example.org', jti: `j-${++n}`, sub: `${role}-${n}@pool.example.org`, exp: 2_000_000_000 }), expiresIn: 3600 }),
  certificate: async () => ({ certificate: 'PEM', serial: `${++n}`, notAfter: 2_000_000_000 }),
  pilotEnrolment: async () => ({ token: jwt({ jti: 'e', sub: 'operator', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } }),
} as unknown as BrokerClient

async function bundlesOf(templateText: string) {
  const { bundles } = await renderCluster({ templateText, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 })
  const file = (bundle: string, path: string) => bundles.find((b) => b.name === bundle)!.files.find((f) => f.path === path)?.content
  return { file }
}

const BROKER_RULE = 'SCITOKENS /^https:\\/\\/broker\\.example\\.org,(.*)$/ \\1'
const rules = (mapfile: string | undefined) => (mapfile ?? '').split('\n').filter((l) => l.startsWith('SCITOKENS '))

describe('provision render: the mapfile every CERTIFICATE_MAPFILE names', () => {
  it('writes the mapfile, with the broker\'s rule, for a schedd without user_mapping (its config names one)', async () => {
    const noMapping = text.replace(/\n +user_mapping: \{[^\n]*\}/, '')
    expect(noMapping).not.toBe(text)
    const { file } = await bundlesOf(noMapping)
    for (const node of ['ap', 'cm']) {
      expect(readCondorConfig(file(node, 'condor_config.d/50-broker.conf')!).knobs.get('CERTIFICATE_MAPFILE')).toBe('/etc/condor/certs/condor_mapfile')
      expect(rules(file(node, 'certs/condor_mapfile'))).toEqual([BROKER_RULE])
    }
  })

  it('gives the central manager a rule for each schedd\'s issuer, as its ALLOW_READ admits each one\'s users', async () => {
    const second = text.replace('    workers:\n', [
      '    ap2_host:',
      '      type: htc.nodes.Compute',
      '      properties: { address: ap2.cloud-a.example.org }',
      '    ap2:',
      '      type: htc.nodes.Schedd',
      '      properties:',
      '        name: ap2',
      '        user_mapping: { scitokens_issuer: "https://iam2.example.org/", subject_domain: users2.hybrid }',
      '      requirements: [ { host: ap2_host }, { collector: cm } ]',
      '    workers:',
      '',
    ].join('\n'))
    expect(second).not.toBe(text)
    const { file } = await bundlesOf(second)
    const cmRead = readCondorConfig(file('cm', 'condor_config.d/50-broker.conf')!).knobs.get('ALLOW_READ')!
    expect(cmRead).toContain('*@users.hybrid')
    expect(cmRead).toContain('*@users2.hybrid')
    expect(rules(file('cm', 'certs/condor_mapfile'))).toEqual([
      'SCITOKENS /^https:\\/\\/iam\\.example\\.org\\/,(.*)$/ \\1@users.hybrid',
      'SCITOKENS /^https:\\/\\/iam2\\.example\\.org\\/,(.*)$/ \\1@users2.hybrid',
      BROKER_RULE,
    ])
    expect(rules(file('ap2', 'certs/condor_mapfile'))).toEqual(['SCITOKENS /^https:\\/\\/iam2\\.example\\.org\\/,(.*)$/ \\1@users2.hybrid', BROKER_RULE])
  })
})
