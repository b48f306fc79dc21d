import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import type { BrokerClient } from '../../src/clients/provision/broker_client.ts'
import { planCluster } from '../../src/clients/provision/plan.ts'
import { TemplateError } from '../../src/clients/provision/template/load_template.ts'

// `plan` prints what `render` would request (docs/provisioning.md). A template render refuses must be
// refused by plan too, with the same one line, and plan must never ask the broker about more hosts than
// render could ever request: a startd's count is 1 to 1000, and above 1 its host needs {n}.
const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const text = readFileSync(EXAMPLE, 'utf8')
const inputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>
const countLine = text.split('\n').findIndex((l) => /count: \{ get_input: startd_count \}/.test(l)) + 1

function answeringBroker(): { broker: BrokerClient; asked: string[] } {
  const asked: string[] = []
  const broker = {
    base: 'https://broker.example.org',
    explain: async (r: { role: string; host?: string }) => { asked.push(`${r.role} ${r.host ?? ''}`); return { decision: { allow: true, ruleId: 'r', identity: 'x@pool.example.org' } } },
    checkCertificate: async () => ({ allow: true, rule: 'r', lifetime: 3600 }),
  } as unknown as BrokerClient
  return { broker, asked }
}

const bearer = `e30.${Buffer.from(JSON.stringify({ iss: 'https://iam.example.org/', sub: 'operator' })).toString('base64url')}.sig`
const unbounded = text.replace('constraints: [ { in_range: [1, 50] } ]', 'constraints: []')

async function plan(templateText: string, more: Record<string, unknown>) {
  const { broker, asked } = answeringBroker()
  const result = await planCluster({ templateText, templateFile: EXAMPLE, inputs: { ...inputs, ...more }, inputsFile: 'inputs.yaml', broker, bearer }).then(() => undefined, (e: unknown) => e)
  return { err: result, asked }
}

describe('provision plan: refuses what render refuses', () => {
  it('plans the example, asking for each startd host', async () => {
    const { err, asked } = await plan(text, {})
    expect(err).toBeUndefined()
    expect(asked.filter((a) => a.startsWith('startd '))).toEqual(['startd ep-1.cloud-a.example.org', 'startd ep-2.cloud-a.example.org'])
  })

  it.each([
    ['a billion startds', 1_000_000_000],
    ['1001 startds', 1001],
    ['no startd', 0],
    ['a negative count', -5],
  ])('refuses %s at the count, before asking about any startd', async (_, count) => {
    const { err, asked } = await plan(unbounded, { startd_count: count })
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).line).toBe(countLine)
    expect((err as TemplateError).message).toMatch(/count must be from 1 to 1000/)
    expect(asked.filter((a) => a.startsWith('startd '))).toEqual([])
  })

  it('refuses a count above 1 on a host without {n}', async () => {
    const { err } = await plan(unbounded.replace('"ep-{n}."', '"ep."'), {})
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).message).toMatch(/needs a host address with \{n\}/)
  })

  it('refuses a daemon behind NAT when the central manager serves no CCB, as render does', async () => {
    const noCcb = text.replace('signing_key_ref: "broker:key/broker1"', 'signing_key_ref: "broker:key/broker1"\n        ccb: false')
    const { err, asked } = await plan(noCcb, {})
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).message).toMatch(/workers runs on a host behind NAT, but the central manager has ccb: false/)
    expect(asked.filter((a) => a.startsWith('startd '))).toEqual([])
  })

  it('refuses {n} in the host of a schedd, as render does', async () => {
    const { err } = await plan(text.replace('"ap1.", { get_input', '"ap{n}.", { get_input'), {})
    expect(err).toBeInstanceOf(TemplateError)
    expect((err as TemplateError).message).toMatch(/ap: \{n\} stands for the index of a scaled startd/)
  })
})

// docs/provisioning.md lists a Startd's attributes as hostnames[], identities[] and issued_token_jtis[], and
// render (and its check before issuing) gives each node one jti per token. Outputs that read them are
// valid templates: plan must not refuse them for an attribute or a list entry only render fills in.
describe('provision plan: accepts what render accepts', () => {
  it.each([
    ['a startd\'s hostnames', '{ get_attribute: [ workers, hostnames, 1 ] }'],
    ['the central manager\'s first jti', '{ get_attribute: [ cm, issued_token_jtis, 0 ] }'],
    ['a startd\'s second jti', '{ get_attribute: [ workers, issued_token_jtis, 1 ] }'],
  ])('plans a template whose output reads %s', async (_, value) => {
    const withOutput = text.replace('  outputs:\n', `  outputs:\n    extra: { value: ${value} }\n`)
    expect(withOutput).not.toBe(text)
    const { err } = await plan(withOutput, {})
    expect(err).toBeUndefined()
  })
})
