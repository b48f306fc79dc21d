import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initPoolCa } from '../../src/ca/pool_ca.ts'
import { runCli } from '../../src/cli/main.ts'
import { KeyStore } from '../../src/keys/key_store.ts'
import { claimsOf, startE2e, TE, type E2e } from '../support/broker_e2e.ts'
import { epoch, readRecord, recorder, until, verifiesWithPoolKey } from '../support/pilot_recorder.ts'
import { startSlurm, type TestSlurm } from '../support/slurm.ts'
import { DRAIN_S, policiesWithTokenLifetime, SITE, TRUST, WALLTIME_S } from '../support/slurm_pilot_setup.ts'

// The provisioning module's SLURM pilot group on a real (throw-away) SLURM cluster: the example template
// rendered by `provision render` against the broker and the development IAM on loopback, the SLURM site's
// settings given as template inputs (partition, sizes, walltime, drain margin, the pilot directory, and a
// recorder as the command, standing in for condor_master as in slurm_pilot.test.ts). The bundle's pilot.sbatch
// is submitted as rendered and its enrolment.cred staged, byte for byte, where the template says; then
// `provision teardown` revokes what the manifest lists. The interop project runs one file at a time
// (vitest.config.ts), so this cluster never runs beside slurm_pilot.test.ts's.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const SCOPE = 'condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER'
// As in slurm_pilot.test.ts: 10 s pilot tokens (renewed every ~5 s).
const TOKEN_LIFE_S = 10

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(args, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

describe('the provisioning-rendered sbatch pilot on a real SLURM cluster', () => {
  let slurm: TestSlurm
  let e: E2e
  let root: string
  beforeAll(async () => {
    slurm = await startSlurm({ nodes: 2 })
    root = mkdtempSync(join(tmpdir(), 'ctb-slurm-prov-'))
    const caDir = join(root, 'ca')
    await initPoolCa(caDir, { name: 'interop pool CA', now: Math.floor(Date.now() / 1000) })
    // The example's operator policy with 10 s pilot tokens.
    const policies = policiesWithTokenLifetime(join(import.meta.dirname, '../../examples/provisioning/policies'), join(root, 'policies'), '50-provisioning.yaml', TOKEN_LIFE_S)
    e = await startE2e({ CTB_POLICY_DIR: policies, CTB_TRUST_DOMAIN: TRUST, CTB_CA_DIR: caDir })
  })
  afterAll(async () => {
    await slurm?.stop()
    await e?.close()
    if (root) rmSync(root, { recursive: true, force: true })
  })

  it('runs as rendered: verified tokens per node, renewed until drained, the credential redeemed once per node and gone; teardown revokes it', async () => {
    const work = join(root, 'work')
    mkdirSync(work)
    const bearer = join(work, 'bt')
    writeFileSync(bearer, `${await e.robot('provisioner')}\n`, { mode: 0o600 })
    const env = { BEARER_TOKEN_FILE: bearer }
    const brokerArgs = ['--broker', e.broker.url, '--ca-file', e.broker.devCaFile!]

    // The SLURM site's directory, as the pilot_dir input names it; its admin makes the log directory.
    const site = join(root, 'site')
    mkdirSync(join(site, 'logs'), { recursive: true })
    chmodSync(site, 0o755)
    const inputs = join(work, 'inputs.yaml')
    writeFileSync(inputs, [
      `trust_domain: ${TRUST}`, `iam_issuer: ${e.devIam.issuer}`, 'pilot_nodes: 2', `pilot_partition: ${slurm.partition}`,
      'pilot_cpus: 1', 'pilot_mem_mb: 100', `pilot_walltime: ${WALLTIME_S}`, `pilot_drain_margin: ${DRAIN_S}`,
      `pilot_dir: ${site}`, `pilot_command: ${recorder(site)}`, '',
    ].join('\n'))
    const out = join(work, 'out')
    const rendered = await cli(['provision', 'render', EXAMPLE, '--inputs', inputs, ...brokerArgs, '--out', out], env)
    expect(rendered.err).toBe('')
    expect(rendered.code).toBe(0)
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { tokens: Array<{ jti: string; node: string; kind: string }>; certificates: unknown[] }
    const enrolmentJti = manifest.tokens.find((t) => t.node === 'hpc' && t.kind === 'pilot_enrolment')!.jti

    // What the bundle README asks of the site: the credential and the broker's TLS CA where the script looks.
    const bundle = join(out, 'hpc')
    const credential = readFileSync(join(bundle, 'enrolment.cred'), 'utf8').trim()
    // 2 nodes x (1 run + 2 requeues + 1 spare for a lost answer): docs/provisioning.md.
    expect(claimsOf(credential)).toMatchObject({ jti: enrolmentJti, ctb_site: SITE, count: 8 })
    const staged = join(site, 'enrolment.cred')
    copyFileSync(join(bundle, 'enrolment.cred'), staged)
    chmodSync(staged, 0o600)
    copyFileSync(e.broker.devCaFile!, join(site, 'broker-ca.crt'))
    const job = await slurm.sbatch(join(bundle, 'pilot.sbatch'))

    const rec = (node: string) => readRecord(join(site, `rec-${job}-${node}.log`))
    const pilotLog = () => { const f = join(site, 'logs', `pilot-${job}.out`); return existsSync(f) ? readFileSync(f, 'utf8') : '(no pilot log)' }
    const end = epoch((await slurm.waitJob(job, ['RUNNING', 'COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], 30_000)).EndTime!)
    await until(() => slurm.nodes.every((n) => rec(n).tokens.length >= 2), 40_000, `job ${job} renewed on both nodes\n${pilotLog()}`)
    const done = await slurm.waitJob(job, ['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED'], (WALLTIME_S + 60) * 1000)
    expect(done.JobState, pilotLog()).toBe('COMPLETED')
    expect(done.ExitCode).toBe('0:0')
    expect(done.NodeList).toBe('ctbn[1-2]')
    expect(done.Partition).toBe(slurm.partition)
    expect(epoch(done.EndTime!)).toBeLessThan(end)
    expect(pilotLog()).toContain("received SIGUSR1: passing SIGTERM to every node's task")

    const keys = new KeyStore(join(e.env.CTB_DATA_DIR!, 'keys'))
    const kid = e.broker.services.config.idtoken.key
    const subs: string[] = []
    for (const node of slurm.nodes) {
      const r = rec(node)
      expect(r.term, pilotLog()).toBeDefined()
      expect(r.term!).toBeLessThan(end)
      expect(r.tokens.length, pilotLog()).toBeGreaterThanOrEqual(2)
      const jtis = new Set<string>()
      for (const t of r.tokens) {
        expect(t.mode).toBe('600')
        expect(verifiesWithPoolKey(t.token, keys, kid)).toBe(true)
        const c = claimsOf(t.token)
        expect(c).toMatchObject({ iss: TRUST, sub: `pilot+${SITE}+${enrolmentJti}+${job}-${node}@pilots.${TRUST}`, ctb_enrolment: enrolmentJti, scope: SCOPE, ctb_role: 'pilot', ctb_site: SITE, ctb_slurm_job: job })
        expect(c.exp as number).toBeLessThanOrEqual(end)
        expect((c.exp as number) - (c.iat as number)).toBeLessThanOrEqual(TOKEN_LIFE_S)
        jtis.add(c.jti as string)
      }
      expect(jtis.size).toBe(r.tokens.length)
      subs.push(claimsOf(r.tokens[0]!.token).sub as string)
    }
    expect(new Set(subs).size).toBe(2)
    // The job drained (SIGUSR1), an end SLURM never requeues: the staged credential is gone. Each node redeemed once,
    // on the job's first run.
    expect(existsSync(staged)).toBe(false)
    const redeemed = (await e.broker.services.store.query({ type: 'token.issued', limit: 1000 })).records
      .map((r) => r.event.detail as { slurmJob?: string; pilot?: { node: string; restart: number } } | undefined)
      .filter((d) => d?.slurmJob === job).map((d) => `${d!.pilot!.node}:${d!.pilot!.restart}`).sort()
    expect(redeemed).toEqual(['ctbn1:0', 'ctbn2:0'])
    const redeem = (restart = '0') => e.post('/token', { grant_type: TE, subject_token: credential, subject_token_type: 'urn:condor-token-broker:token-type:pilot-enrolment', slurm_job_id: job, node: 'ctbn3', job_end: String(Math.floor(Date.now() / 1000) + 600), slurm_restart_count: restart })
    // A run beyond the shipped policy's default pilot.max_restarts (2) is refused, whatever slots are left.
    expect((await redeem('3')).body).toEqual({ error: 'invalid_grant', error_description: 'slurm_restart_count 3 is above the 2 restarts role pilot allows' })

    // Teardown revokes what the manifest lists, the group's enrolment among them.
    const torn = await cli(['provision', 'teardown', '--manifest', join(out, 'manifest.json'), ...brokerArgs], env)
    expect(torn.err).toBe('')
    expect(torn.code).toBe(0)
    expect(torn.out).toBe(`revoked ${manifest.tokens.length} tokens and ${manifest.certificates.length} certificates`)
    const admin = { authorization: `Bearer ${readFileSync(bearer, 'utf8').trim()}` }
    const revoked = (await e.get('/v1/revocations', admin)).body.revocations as Array<{ kind: string; value: string }>
    expect(revoked.filter((x) => x.kind === 'pilot-enrolment').map((x) => x.value)).toContain(enrolmentJti)
    expect((await redeem()).body).toEqual({ error: 'invalid_grant', error_description: 'the pilot enrolment credential has been revoked' })
    console.log(`provisioned slurm pilot: tokens seen ${slurm.nodes.map((n) => rec(n).tokens.length).join(' + ')}`)
  }, (WALLTIME_S + 120) * 1000)
})
