import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

const ISS = 'https://localhost:8444/'

function env(): NodeJS.ProcessEnv {
  return { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_VARS: `IAM_ISSUER=${ISS}` }
}

describe('condor-token-broker policy check', () => {
  it('validates the shipped policies with a one-line summary', async () => {
    const r = await cli(['policy', 'check', 'policies'], env())
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^policies: OK, 4 files, 8 rules, 11 grants; roles: admin, annex-pilot, central-manager, credd, job, job-credentials, monitoring, pilot, schedd, startd, submit-user; digest [0-9a-f]{12}$/)
  })

  it('prints FILE:LINE:COL errors and exits 1', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bad.yaml'), [
      'version: 1',
      'rules:',
      '  - id: pilots',
      '    match:',
      '      issuer: ${IAM_ISSUER}',
      '    grants:',
      '      - role: pilot',
      '        identity: condor@{trust_domain}',
      '        token_kinds: [idtoken]',
      '        authz: [ADVERTISE_STARTD, WRITE]',
      '        lifetime: { default: 1h, max: 1d }',
      '',
    ].join('\n'))
    const r = await cli(['policy', 'check', dir], env())
    expect(r.code).toBe(1)
    expect(r.err.split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^${join(dir, 'bad.yaml')}:8:19: rules\\.0\\.grants\\.0\\.identity: identity condor@… is allowed for the central-manager role only`)),
      expect.stringMatching(new RegExp(`^${join(dir, 'bad.yaml')}:10:16: rules\\.0\\.grants\\.0\\.authz: WRITE .* needs direct_attach: true`)),
      `2 errors in ${dir}`,
    ])
  })

  it('judges the files as serve will: with no IAM configured, IAM_ISSUER is the development IAM', async () => {
    const e = { ...env(), CTB_POLICY_VARS: '', CTB_DEV_IAM_PORT: '18444' }
    expect((await cli(['policy', 'check', 'policies'], e)).code).toBe(0)
    const r = await cli(['policy', 'explain', '--iss', 'http://127.0.0.1:18444/', '--sub', 'x', '--client-id', 'ctb-monitoring', '--role', 'monitoring'], e)
    expect(r.out).toMatch(/^ALLOW/)
  })

  it('names the missing variable and where to set it; --var supplies it', async () => {
    // A production broker (public issuer) with no IAM configured: serve would refuse to start, and there is
    // no development IAM to stand in.
    const e = { ...env(), CTB_POLICY_VARS: '', CTB_ISSUER: 'https://broker.example.org' }
    const r = await cli(['policy', 'check', 'policies'], e)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/policies\/00-admin\.yaml:10:15: unknown variable \$\{IAM_ISSUER\}; set policy\.vars\.IAM_ISSUER/)
    expect((await cli(['policy', 'check', 'policies', '--var', `IAM_ISSUER=${ISS}`], e)).code).toBe(0)
  })

  it('uses policy_dir from the config when no DIR is given', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'p'))
    const r = await cli(['policy', 'check'], { ...env(), CTB_POLICY_DIR: join(dir, 'p') })
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/no policy files/)
  })
})

describe('condor-token-broker policy explain', () => {
  it('says which rule allowed, with the identity, and exits 0', async () => {
    const r = await cli(['policy', 'explain', '--iss', ISS, '--sub', 'svc', '--client-id', 'ctb-cloud-a-ap', '--role', 'schedd', '--host', 'ap1.cloud-a.example.org'], env())
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^ALLOW by rule cloud-a-access-point: idtoken for schedd-ap1@aps\.pool\.example\.org; scope ADVERTISE_SCHEDD ADVERTISE_MASTER READ; trust domain pool\.example\.org \(an IDTOKEN has no aud\); lifetime 86400s/)
    expect(r.out).toMatch(/\* cloud-a-access-point \(policies\/10-cloud-htc\.yaml:24:5\): allowed/)
    expect(r.out).toMatch(/cloud-a-access-point \(policies\/10-cloud-htc\.yaml:24:5\): allowed\n {6}caller matched; issues idtoken for schedd-ap1@aps\.pool\.example\.org with ADVERTISE_SCHEDD ADVERTISE_MASTER READ, trust domain pool\.example\.org \(an IDTOKEN has no aud\)/)
    expect(r.out).toMatch(/ {4}broker-admins \(policies\/00-admin\.yaml:7:5\): caller-mismatch\n {6}caller is in none of the groups '\/ctb-admins'/)
  })

  it('says which rule denied and why, and exits 1', async () => {
    const r = await cli(['policy', 'explain', '--iss', ISS, '--sub', 'u', '--group', '/htc/users', '--username', 'alice', '--role', 'submit-user',
      '--token-type', 'scitoken', '--audience', 'condor://evil.example.org:9618'], env())
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/^DENY \(invalid_target\) by rule htc-users: audience 'condor:\/\/evil\.example\.org:9618' is not allowed for role submit-user/)
    expect(r.out).toMatch(/\* htc-users \(policies\/30-users\.yaml:7:5\): denied/)
  })

  it('a caller no rule matches is default-denied; the trailing slash of the issuer matters', async () => {
    const r = await cli(['policy', 'explain', '--iss', ISS.slice(0, -1), '--sub', 'svc', '--client-id', 'ctb-monitoring', '--role', 'monitoring'], env())
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/^DENY \(unauthorized_client\): no policy rule grants role 'monitoring' to this caller/)
    expect(r.out).toMatch(/issuer 'https:\/\/localhost:8444' is not 'https:\/\/localhost:8444\/' \(compared exactly, trailing slash included\)/)
    expect(r.out).toMatch(/no rule grants this role to this caller: default deny/)
  })

  it('--json gives the machine-readable explanation; params and lifetime are passed through', async () => {
    const r = await cli(['policy', 'explain', '--json', '--iss', ISS, '--sub', 'f', '--client-id', 'ctb-hpc-b-pilot-factory', '--role', 'pilot',
      '--param', 'site=hpc-b', '--param', 'slurm_job_id=77', '--lifetime', '999999999', '--request-scope', 'READ'], env())
    expect(r.code).toBe(0)
    const j = JSON.parse(r.out)
    expect(j.decision).toMatchObject({ allow: true, ruleId: 'hpc-b-pilots', identity: 'pilot-hpc-b-77@pilots.pool.example.org', scopes: ['READ'], lifetime: 604800, trimmed: ['lifetime'] })
    expect(j.rules).toHaveLength(8)
  })

  it.each([
    [['policy', 'explain', '--sub', 's', '--role', 'r'], /--iss is required/],
    [['policy', 'explain', '--iss', ISS, '--sub', 's', '--role', 'r', '--token-type', 'x509'], /--token-type must be one of idtoken, scitoken, access_token/],
    [['policy', 'explain', '--iss', ISS, '--sub', 's', '--role', 'r', '--param', 'site'], /--param takes NAME=VALUE/],
    [['policy', 'explain', '--iss', ISS, '--sub', 's', '--role', 'r', '--lifetime', '1.5'], /--lifetime must be a positive whole number/],
    [['policy', 'frobnicate'], /unknown policy command "frobnicate"/],
  ])('usage errors exit 2: %j', async (args, message) => {
    const r = await cli(args, env())
    expect(r.code).toBe(2)
    expect(r.err).toMatch(message)
  })
})
