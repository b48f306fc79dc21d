import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import { loadTemplate } from '../../src/clients/provision/template/load_template.ts'
import { realisationOrder, realiseTemplate, resolveInputs } from '../../src/clients/provision/template/resolve_template.ts'

const EXAMPLE = 'examples/provisioning/hybrid-pool.yaml'
const exampleText = readFileSync(EXAMPLE, 'utf8')
const exampleInputs = parse(readFileSync('examples/provisioning/inputs.yaml', 'utf8')) as Record<string, unknown>

/** A small valid template; tests edit one line of it. Line numbers below are counted by hand. */
const SMALL = `tosca_definitions_version: tosca_simple_yaml_1_3
metadata: { template_name: t, template_version: "1" }
topology_template:
  inputs:
    td: { type: string }
    n: { type: integer, default: 2, constraints: [ { in_range: [1, 5] } ] }
  node_templates:
    h:
      type: htc.nodes.Compute
      properties: { address: cm.example.org }
    cm:
      type: htc.nodes.CentralManager
      properties: { pool_name: p, trust_domain: { get_input: td }, signing_key_ref: "broker:key/k" }
      requirements: [ { host: h } ]
`

function err(text: string): string {
  try { loadTemplate(text, 't.yaml') } catch (e) { return (e as Error).message }
  throw new Error('expected the template to be refused')
}

async function realise(text: string, inputs: Record<string, unknown>) {
  const t = loadTemplate(text, 't.yaml')
  return realiseTemplate(t, resolveInputs(t, inputs, 'in.yaml'), async (n, attrs) => ({
    hostname: n.properties.address, public_address: [n.properties.address], seen: Object.keys(attrs), issued_token_jtis: [`jti-${n.name}`],
    ...(n.type === 'htc.nodes.CentralManager' ? { collector_address: `${String(attrs[n.requirements.host!]!.hostname)}:9618` } : {}),
    ...(n.type === 'htc.nodes.Schedd' ? { name: n.properties.name } : {}),
  }))
}

describe('provisioning template', () => {
  it('loads the example and realises every node after its dependencies', async () => {
    const r = await realise(exampleText, exampleInputs)
    const at = (n: string) => r.order.indexOf(n)
    expect(r.order).toHaveLength(7)
    expect(at('cm')).toBeGreaterThan(at('cm_host'))
    expect(at('ap')).toBeGreaterThan(at('cm'))
    expect(at('workers')).toBeGreaterThan(at('ep_hosts'))
    expect(at('hpc')).toBeGreaterThan(at('cm'))
    expect(r.outputs).toMatchObject({ collector_address: 'cm.cloud-a.example.org:9618', schedd_name: 'ap1', pilot_token_jtis: ['jti-hpc'] })
    expect((r.outputs.token_jtis as Record<string, unknown>).cm).toEqual(['jti-cm'])
  })

  it('substitutes inputs and concat before realising a node', async () => {
    const seen: Record<string, unknown>[] = []
    const t = loadTemplate(exampleText, EXAMPLE)
    await realiseTemplate(t, resolveInputs(t, { ...exampleInputs, cloud_domain: 'c.example.net' }), async (n) => { seen.push(n.properties); return { hostname: 'x', public_address: [], collector_address: 'x:9618', name: 'n', issued_token_jtis: [] } })
    expect(seen).toContainEqual({ address: 'cm.c.example.net' })
    expect(seen).toContainEqual(expect.objectContaining({ trust_domain: 'pool.example.org' }))
  })

  it('refuses an unknown key at its line and column', () => {
    expect(err(SMALL.replace('type: htc.nodes.Compute', 'type: htc.nodes.Compute\n      flavour: big'))).toBe('t.yaml:10:7: unknown key "flavour"')
    expect(err(SMALL.replace('pool_name: p,', 'pool_name: p, colour: red,'))).toBe('t.yaml:13:35: unknown key "colour"')
    expect(err(SMALL.replace('metadata:', 'metdata:'))).toMatch(/^t\.yaml:2:1: unknown key "metdata"/)
  })

  it('refuses a wrong type at the value', () => {
    expect(err(SMALL.replace('pool_name: p,', 'pool_name: [a, b],'))).toMatch(/^t\.yaml:13:32: wrong type: expected string or a function .*got a list/)
    expect(err(SMALL.replace('{ type: string }', '{ type: text }'))).toMatch(/^t\.yaml:5:17: Invalid option: expected one of "string"/)
  })

  it('refuses a missing required property and a requirement of the wrong type', () => {
    expect(err(SMALL.replace(', signing_key_ref: "broker:key/k"', ''))).toMatch(/^t\.yaml:13:19: missing "signing_key_ref"/)
    expect(err(SMALL.replace('{ host: h }', '{ host: cm }'))).toBe('t.yaml:14:31: requirement host must name a htc.nodes.Compute, but cm is a htc.nodes.CentralManager')
  })

  it('refuses a missing input at its declaration, and a bad provided value naming the inputs file', () => {
    const t = loadTemplate(SMALL, 't.yaml')
    expect(() => resolveInputs(t, {}, 'in.yaml')).toThrow('t.yaml:5:5: missing input "td": give it in the inputs file or declare a default')
    expect(() => resolveInputs(t, { td: 'x', n: 9 }, 'in.yaml')).toThrow(/^in\.yaml: input "n": 9 is not in range \[1, 5\] \(constraint at t\.yaml:6:52\)/)
    expect(() => resolveInputs(t, { td: 7 }, 'in.yaml')).toThrow(/^in\.yaml: input "td": expected string, got number 7/)
    expect(() => resolveInputs(t, { td: 'x', tdd: 'y' }, 'in.yaml')).toThrow('in.yaml: unknown input "tdd" (the template declares td, n)')
  })

  it('refuses a dependency cycle, naming it', () => {
    const cyc = SMALL.replace('properties: { address: cm.example.org }', 'properties: { address: { get_attribute: [ cm, collector_address ] } }')
    expect(err2(cyc)).toBe('t.yaml:8:5: dependency cycle: h → cm → h')
  })

  it.each([
    ['an input named like a secret', SMALL.replace('td: { type: string }', 'td: { type: string }\n    iam_token: { type: string }'), /^t\.yaml:6:5: input "iam_token" looks like a secret/],
    ['a JWT default', SMALL.replace('{ type: string }', '{ type: string, default: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig" }'), /^t\.yaml:5:34: the default of "td" looks like a JWT/],
    ['a PEM property', SMALL.replace('pool_name: p,', 'pool_name: "-----BEGIN PRIVATE KEY-----",'), /^t\.yaml:13:32: property cm\.pool_name looks like PEM/],
    // Outputs go into manifest.json, which is stored and shown freely (docs/provisioning.md, No secrets).
    ['a PEM output', `${SMALL}  outputs:\n    o: { value: "-----BEGIN PRIVATE KEY-----" }\n`, /^t\.yaml:16:17: output o looks like PEM/],
    ['a property named password', SMALL.replace('pool_name: p,', 'pool_name: p, pool_password: x,'), /^t\.yaml:13:35: property "pool_password" looks like a secret/],
  ])('refuses %s', (_, text, message) => {
    expect(err(text)).toMatch(message)
  })

  it('refuses a secret-looking provided input value', () => {
    const t = loadTemplate(SMALL, 't.yaml')
    expect(() => resolveInputs(t, { td: 'Bearer abc.def' }, 'in.yaml')).toThrow('in.yaml: input "td" looks like a bearer header; templates carry no secrets (the broker puts credentials into bundles)')
  })

  // Names are looked up in plain objects; `constructor` is a valid name and every object "has" it through
  // Object.prototype. A template or inputs file must not reach Object.prototype by naming it: each is an
  // undeclared input, an unknown node or attribute, or an unknown requirement, refused at the property.
  describe('names shared with Object.prototype', () => {
    it('refuses get_input of an undeclared input named constructor', async () => {
      const text = SMALL.replace('trust_domain: { get_input: td }', 'trust_domain: { concat: [ { get_input: constructor } ] }')
      await expect(realise(text, { td: 'x' })).rejects.toThrow(/^t\.yaml:13:\d+: get_input names an undeclared input "constructor"/)
    })

    it('gives nothing for an optional input named constructor that is not set', async () => {
      const text = SMALL.replace('td: { type: string }', 'td: { type: string }\n    constructor: { type: string, required: false }')
        .replace('pool_name: p,', 'pool_name: { concat: [ p, { get_input: constructor } ] },')
      const t = loadTemplate(text, 't.yaml')
      const seen: Record<string, unknown>[] = []
      await realiseTemplate(t, resolveInputs(t, { td: 'x' }, 'in.yaml'), async (n) => { seen.push(n.properties); return { hostname: 'h' } })
      // An unset input is undefined (concat writes it as "undefined"), never Object's source text.
      expect(seen[1]!.pool_name).toBe('pundefined')
    })

    it('refuses get_attribute of a node named constructor, one line at the property', async () => {
      const text = SMALL.replace('pool_name: p,', 'pool_name: { get_attribute: [ constructor, x ] },')
      await expect(realise(text, { td: 'x' })).rejects.toThrow(/^t\.yaml:13:\d+: get_attribute names an unknown node "constructor"/)
    })

    it('refuses get_attribute of an attribute named constructor', async () => {
      const text = SMALL.replace('pool_name: p,', 'pool_name: { concat: [ { get_attribute: [ h, constructor ] } ] },')
      await expect(realise(text, { td: 'x' })).rejects.toThrow(/^t\.yaml:13:\d+: htc\.nodes\.Compute has no attribute "constructor"/)
    })

    it('refuses a provided input named constructor as unknown', () => {
      const t = loadTemplate(SMALL, 't.yaml')
      expect(() => resolveInputs(t, { td: 'x', constructor: 'y' }, 'in.yaml')).toThrow('in.yaml: unknown input "constructor" (the template declares td, n)')
    })

    it('refuses a requirement named constructor, and one naming a node constructor, as unknown', () => {
      expect(err(SMALL.replace('{ host: h }', '{ host: h }, { constructor: h }'))).toBe('t.yaml:14:38: htc.nodes.CentralManager takes no requirement "constructor" (it takes host)')
      expect(err(SMALL.replace('{ host: h }', '{ host: constructor }'))).toBe('t.yaml:14:31: requirement host names an unknown node "constructor"')
    })
  })

  // YAML aliases may refer to the node that holds them (`&a [ *a ]`) or multiply one another; either
  // reaches code that walks or prints values (an internal error with no position). Both are the
  // template's or the inputs file's mistake, reported in one line.
  it('refuses a value that contains itself through an alias, at the alias', () => {
    expect(err(SMALL.replace('td: { type: string }', 'td: { type: string, default: &a [ *a ] }'))).toMatch(/^t\.yaml:5:39: .*contains itself/)
  })

  it('refuses a provided input that contains itself', () => {
    const t = loadTemplate(SMALL, 't.yaml')
    const loop: unknown[] = []
    loop.push(loop)
    expect(() => resolveInputs(t, { td: loop }, 'in.yaml')).toThrow(/^in\.yaml: input "td" contains itself/)
  })

  it('refuses aliases that multiply one another, in one line', () => {
    const laughs = ['x0: &a0 [a, a, a, a, a, a, a, a, a, a]']
    for (let i = 1; i < 12; i++) laughs.push(`x${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`)
    expect(err(`${laughs.join('\n')}\n`)).toMatch(/^t\.yaml:\d+:\d+: [^\n]*alias/)
  })

  // docs/provisioning.md, Resolution step 1: functions are checked for shape with the document, before
  // anything is asked of the broker; outputs are evaluated last, after every token has been issued.
  it.each([
    ['get_attribute of a number', '{ get_attribute: 5 }'],
    ['concat of a number', '{ concat: 5 }'],
    ['get_attribute without an attribute', '{ get_attribute: [ cm ] }'],
    ['a negative index', '{ get_attribute: [ cm, issued_token_jtis, -1 ] }'],
    ['concat inside concat', '{ concat: [ { concat: [ a ] } ] }'],
    ['a function inside a list', '[ { get_input: [ td ] } ]'],
  ])('refuses an output with %s when the template is loaded', (_, value) => {
    expect(err(`${SMALL}  outputs:\n    o: { value: ${value} }\n`)).toMatch(/^t\.yaml:16:\d+: /)
  })

  // A pool has one collector: render writes one TRUST_DOMAIN, COLLECTOR_HOST and CM identity into every
  // bundle (docs/provisioning.md), so a second central manager would silently point daemons that require
  // it at the other one.
  it('refuses a second central manager, at its type', () => {
    const two = `${SMALL}    cm2:\n      type: htc.nodes.CentralManager\n      properties: { pool_name: q, trust_domain: { get_input: td }, signing_key_ref: "broker:key/k" }\n      requirements: [ { host: h } ]\n`
    expect(err(two)).toBe('t.yaml:16:7: cm2: a template has one htc.nodes.CentralManager (cm is already one); a pool has one collector')
  })

  it('reports YAML syntax errors with a position', () => {
    expect(err('a: [1, 2\nb: 3\n')).toMatch(/^t\.yaml:\d+:\d+: /)
  })
})

function err2(text: string): string {
  try { realisationOrder(loadTemplate(text, 't.yaml')) } catch (e) { return (e as Error).message }
  throw new Error('expected a cycle')
}
