import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { renderCluster } from '../../src/clients/provision/render.ts'
import { TemplateError } from '../../src/clients/provision/template/load_template.ts'

// A Compute node's ip_addresses go into the host certificate's IP names (docs/pool-ca.md). A startd scaled with
// count N on an address with {n} stands for N hosts, but its Compute node has one ip_addresses list: every one
// of the N certificates would name every address, so any execute point's key would be good for the others'
// addresses (a node taken over answers as its neighbours over SSL). Which address is whose is not said, so
// render refuses the pairing before asking the broker for anything.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>

function recordingBroker(): { broker: BrokerClient; asked: Array<{ dns: string[]; ip: string[] }> } {
  const asked: Array<{ dns: string[]; ip: string[] }> = []
  const jwt = (claims: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
  let n = 0
  const broker = {
    base: 'https://broker.example.org',
    caCertificate: async () => '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
    metadata: async () => ({ issuer: 'https://broker.example.org' }),
    daemonToken: async (role: string) => ({ token: jwt({ iss: 'pool.example.org', jti: `j-${++n}`, sub: `${role}-${n}@pool.example.org`, exp: 2_000_000_000 }), expiresIn: 3600 }),
    certificate: async (req: { dns: string[]; ip: string[] }) => { asked.push({ dns: req.dns, ip: req.ip }); return { certificate: 'PEM', serial: `${++n}`, notAfter: 2_000_000_000 } },
    pilotEnrolment: async () => ({ token: jwt({ jti: 'e', sub: 'operator', exp: 2_000_000_000 }), expiresIn: 3600, answer: { pilot_identity: 'pilot+hpc-b+e+{slurm_job_id}-{node}@pilots.pool.example.org' } }),
  } as unknown as BrokerClient
  return { broker, asked }
}

const withIps = () => text
  .replace('address: { concat: [ "ep-{n}.", { get_input: cloud_domain } ] }, nat: true', 'address: { concat: [ "ep-{n}.", { get_input: cloud_domain } ] }, ip_addresses: [ 10.0.0.5, 10.0.0.6 ], nat: true')

describe('provision render: IP addresses of a scaled startd\'s host', () => {
  it('refuses ip_addresses on a host a startd scales to several, before any certificate is asked for', async () => {
    const bad = withIps()
    expect(bad).not.toBe(text)
    const { broker, asked } = recordingBroker()
    const err = await renderCluster({ templateText: bad, templateFile: EXAMPLE, inputs, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as Error).message).toContain('workers: count 2 stands for 2 hosts, but ep_hosts has one ip_addresses list')
    expect(asked).toEqual([])
  })

  it('keeps the addresses of a startd with one host in its certificate', async () => {
    const { broker, asked } = recordingBroker()
    await renderCluster({ templateText: withIps(), templateFile: EXAMPLE, inputs: { ...inputs, startd_count: 1 }, inputsFile: 'inputs.yaml', broker, now: 1_800_000_000 })
    expect(asked.find((a) => a.dns[0] === 'ep-1.cloud-a.example.org')).toEqual({ dns: ['ep-1.cloud-a.example.org'], ip: ['10.0.0.5', '10.0.0.6'] })
  })
})
