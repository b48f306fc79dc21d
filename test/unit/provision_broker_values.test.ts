import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import { BrokerCallError, BrokerClient, type Fetch } from '../../src/clients/provision/broker_client.ts'
import { renderCluster } from '../../src/clients/provision/render.ts'

// Some of what the broker answers is written into a node's files as it comes: its issuer into a comment line
// of 50-broker.conf and a SCITOKENS line of condor_mapfile, a host certificate into certs/host.crt, its serial
// into manifest.json (teardown revokes by it), a token into tokens.d/. HTCondor ends a config value, and a
// mapfile rule, at the end of its line and reads each line of a token file as a token; so an answer carrying a
// newline would add knobs (SEC_DEFAULT_AUTHENTICATION = OPTIONAL) or mapfile rules of its own to every bundle,
// and a certificate answer without a serial would leave a certificate no teardown can revoke. Such answers are
// not what a condor-token-broker sends: each is refused as one line, like the other malformed answers.
function answering(status: number, body: unknown): BrokerClient {
  const fetch: Fetch = async () => ({ status, text: async () => JSON.stringify(body) })
  return new BrokerClient({ url: 'https://broker.example.org', bearer: 'x', fetch })
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(BrokerCallError)
  return (err as Error).message
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

describe('broker answers that would be written into a node\'s files', () => {
  it.each([
    'https://broker.example.org\nSEC_DEFAULT_AUTHENTICATION = OPTIONAL',
    'https://broker.example.org/ x',
    'broker.example.org',
    '',
  ])('refuses metadata whose issuer is not one https URL: %j', async (issuer) => {
    expect(await refusal(answering(200, { issuer }).metadata())).toBe('broker metadata: 200 invalid_response: the issuer is not an https URL')
  })

  it('takes the issuer of a real broker', async () => {
    expect(await answering(200, { issuer: 'https://broker.example.org:8443/ctb' }).metadata()).toEqual({ issuer: 'https://broker.example.org:8443/ctb' })
  })

  it.each([
    ['no serial', { certificate: PEM, not_after: 2_000_000_000 }],
    ['a serial that is not hex', { certificate: PEM, serial: '../x', not_after: 2_000_000_000 }],
    ['no PEM certificate', { certificate: '<html>', serial: '0a1b', not_after: 2_000_000_000 }],
    ['no not_after', { certificate: PEM, serial: '0a1b' }],
  ])('refuses a host certificate answer with %s', async (_, body) => {
    expect(await refusal(answering(201, body).certificate({ csr: 'c', role: 'startd', dns: ['ep-1.example.org'], ip: [] })))
      .toBe('host certificate for ep-1.example.org: 200 invalid_response: the answer is not a PEM certificate with a hex serial and not_after')
  })

  it('takes a host certificate answer as the broker sends it', async () => {
    const got = await answering(201, { certificate: PEM, serial: '0a1b', not_after: 2_000_000_000 }).certificate({ csr: 'c', role: 'startd', dns: ['ep-1.example.org'], ip: [] })
    expect(got).toEqual({ certificate: PEM, serial: '0a1b', notAfter: 2_000_000_000 })
  })

  it('refuses a token that is not three base64url parts (a newline would be a second token in tokens.d)', async () => {
    const token = `e30.${b64({ jti: 'j', sub: 's' })}.sig\nother`
    expect(await refusal(answering(200, { access_token: token, expires_in: 10 }).daemonToken('startd', 'ep-1.example.org')))
      .toBe('token for role startd on ep-1.example.org: 200 invalid_response: access_token is not a token with a jti')
  })
})

describe('a daemon token\'s sub, which render writes into every ALLOW list', () => {
  // HTCondor splits an ALLOW list at commas and spaces and reads `*` as a wildcard: a sub carrying one would
  // admit more than the identity the broker issued (`condor@pool.example.org, *` admits everyone as DAEMON).
  it.each(['condor@pool.example.org, *', '*@pool.example.org', 'condor', 'condor@pool.example.org\nALLOW_READ = *'])('refuses sub %j, and keeps its jti so the failed render revokes it', async (sub) => {
    const jwt = (claims: Record<string, unknown>) => `e30.${b64(claims)}.sig`
    const broker = {
      base: 'https://broker.example.org',
      caCertificate: async () => PEM,
      metadata: async () => ({ issuer: 'https://broker.example.org' }),
      daemonToken: async () => ({ token: jwt({ iss: 'pool.example.org', jti: 'j-cm', sub, exp: 2_000_000_000 }), expiresIn: 3600 }),
      certificate: async () => ({ certificate: PEM, serial: '01', notAfter: 2_000_000_000 }),
      pilotEnrolment: async () => ({ token: jwt({ jti: 'e', sub: 'operator', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } }),
    } as unknown as BrokerClient
    const issued = { tokens: [] as Array<{ jti: string }>, certificates: [] as unknown[] }
    const err = await renderCluster({
      templateText: readFileSync('examples/provisioning/hybrid-pool.yaml', 'utf8'), templateFile: 'hybrid-pool.yaml',
      inputs: parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000,
    }, issued as never).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BrokerCallError)
    expect((err as Error).message).toBe('token for role central-manager on cm.cloud-a.example.org: 200 invalid_response: its sub is not one HTCondor identity (name@domain)')
    expect(issued.tokens.map((t) => t.jti)).toContain('j-cm')
  })
})

describe('a host certificate answer refused after the broker signed it', () => {
  // The broker commits the certificate's serial to its audit log before it answers (docs/pool-ca.md), so a
  // certificate whose answer the client refuses is issued all the same. Where the answer still names a serial,
  // the refusal carries it and the failed render revokes it with the rest (DELETE /v1/certificates/{serial}).
  it('carries the serial of an answer whose certificate is not PEM', async () => {
    const err = await answering(201, { certificate: '<html>', serial: '0a1b', not_after: 2_000_000_000 })
      .certificate({ csr: 'c', role: 'startd', dns: ['ep-1.example.org'], ip: [] }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BrokerCallError)
    expect((err as { issuedSerial?: unknown }).issuedSerial).toBe('0a1b')
  })

  it('carries none when the answer names no serial that could be revoked', async () => {
    const err = await answering(201, { certificate: PEM, serial: '../x', not_after: 2_000_000_000 })
      .certificate({ csr: 'c', role: 'startd', dns: ['ep-1.example.org'], ip: [] }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BrokerCallError)
    expect((err as { issuedSerial?: unknown }).issuedSerial).toBeUndefined()
  })

  it('is listed among what a failed render issued, so the CLI revokes it', async () => {
    const jwt = (claims: Record<string, unknown>) => `e30.${b64(claims)}.sig`
    const refusing = answering(201, { certificate: '<html>', serial: '0a1b', not_after: 2_000_000_000 })
    const broker = {
      base: 'https://broker.example.org',
      caCertificate: async () => PEM,
      metadata: async () => ({ issuer: 'https://broker.example.org' }),
      daemonToken: async () => ({ token: jwt({ iss: 'pool.example.org', jti: 'j-cm', sub: 'condor@pool.example.org', exp: 2_000_000_000 }), expiresIn: 3600 }),
      certificate: (req: Parameters<BrokerClient['certificate']>[0]) => refusing.certificate(req),
      pilotEnrolment: async () => ({ token: jwt({ jti: 'e', sub: 'operator', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } }),
    } as unknown as BrokerClient
    const issued = { tokens: [] as Array<{ jti: string }>, certificates: [] as Array<{ serial: string }> }
    const err = await renderCluster({
      templateText: readFileSync('examples/provisioning/hybrid-pool.yaml', 'utf8'), templateFile: 'hybrid-pool.yaml',
      inputs: parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000,
    }, issued as never).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BrokerCallError)
    expect(issued.certificates.map((c) => c.serial)).toEqual(['0a1b'])
  })
})
