import { TemplateError, type LoadedTemplate } from './load_template.ts'
import { secretLookingName, secretLookingValue } from './secrets.ts'
import { selfReferenceAt } from './self_reference.ts'
import { isFunctionCall, NODE_TYPES, type Constraint, type InputDefinition, type NodeTypeName } from './schema.ts'

/** A node with every input substituted and every function resolved, type-checked again. */
export interface ResolvedNode {
  name: string
  type: NodeTypeName
  properties: Record<string, unknown>
  /** Requirement kind → node name. */
  requirements: Record<string, string>
}

/** What realising a node produced: its runtime attributes (addresses, identities, jtis…). */
export type Attributes = Record<string, unknown>

export interface Realised {
  /** Nodes in the order they were realised (every dependency before its dependants). */
  order: string[]
  attributes: Record<string, Attributes>
  outputs: Record<string, unknown>
}

/**
 * Checks the inputs against their definitions: unknown names, types, constraints, required inputs with no
 * default, and values that look like secrets. `where` locates a provided value (the inputs file).
 */
export function resolveInputs(t: LoadedTemplate, provided: Record<string, unknown>, where = 'inputs'): Record<string, unknown> {
  const defs = t.doc.topology_template.inputs ?? {}
  const inputFail = (msg: string): never => { throw new Error(`${where}: ${msg}`) }
  for (const name of Object.keys(provided)) {
    if (!Object.hasOwn(defs, name)) inputFail(`unknown input "${name}" (the template declares ${Object.keys(defs).join(', ') || 'none'})`)
    if (secretLookingName(name)) inputFail(`input "${name}" looks like a secret; templates carry references only`)
    if (selfReferenceAt(provided[name])) inputFail(`input "${name}" contains itself (an alias inside its own anchor); inputs are plain values`)
    const why = secretLookingValue(provided[name])
    if (why) inputFail(`input "${name}" looks like ${why}; templates carry no secrets (the broker puts credentials into bundles)`)
  }
  const out: Record<string, unknown> = {}
  for (const [name, def] of Object.entries(defs)) {
    const path = ['topology_template', 'inputs', name]
    let value = Object.hasOwn(provided, name) ? provided[name] : undefined
    if (value === undefined) value = def.default
    if (value === undefined) {
      if (def.required === false) continue
      t.fail(['topology_template', 'inputs'], `missing input "${name}": give it in the inputs file or declare a default`, name)
    }
    const typeError = checkType(def, value)
    if (typeError) {
      const d = t.at(['topology_template', 'inputs'], name)
      if (Object.hasOwn(provided, name)) inputFail(`input "${name}": ${typeError} (declared at ${t.file}:${d.line}:${d.col})`)
      t.fail([...path, 'default'], `default of "${name}": ${typeError}`)
    }
    for (const [i, c] of (def.constraints ?? []).entries()) {
      const bad = violates(c, value)
      if (bad) {
        const c = t.at([...path, 'constraints', i])
        if (Object.hasOwn(provided, name)) inputFail(`input "${name}": ${bad} (constraint at ${t.file}:${c.line}:${c.col})`)
        t.fail([...path, 'constraints', i], `default of "${name}": ${bad}`)
      }
    }
    out[name] = value
  }
  return out
}

function checkType(def: InputDefinition, v: unknown): string | undefined {
  const scalar = (type: string, x: unknown) =>
    type === 'string' ? typeof x === 'string' : type === 'integer' ? Number.isSafeInteger(x) : type === 'boolean' ? typeof x === 'boolean' : false
  switch (def.type) {
    case 'list':
      if (!Array.isArray(v)) return 'expected a list'
      if (def.entry_schema && v.some((x) => !scalar(def.entry_schema!.type, x))) return `expected a list of ${def.entry_schema.type}`
      return undefined
    case 'map':
      return v !== null && typeof v === 'object' && !Array.isArray(v) ? undefined : 'expected a map'
    default:
      return scalar(def.type, v) ? undefined : `expected ${def.type}, got ${Array.isArray(v) ? 'a list' : typeof v} ${JSON.stringify(v)?.slice(0, 40)}`
  }
}

function violates(c: Constraint, v: unknown): string | undefined {
  if ('in_range' in c) {
    const [lo, hi] = c.in_range
    return typeof v === 'number' && v >= lo && v <= hi ? undefined : `${JSON.stringify(v)} is not in range [${lo}, ${hi}]`
  }
  if ('valid_values' in c) return c.valid_values.includes(v as never) ? undefined : `${JSON.stringify(v)} is not one of ${c.valid_values.join(', ')}`
  let re: RegExp
  try { re = new RegExp(c.pattern) } catch { return `the pattern ${c.pattern} is not a valid regular expression` }
  return typeof v === 'string' && re.test(v) ? undefined : `${JSON.stringify(v)} does not match ${c.pattern}`
}

/** The nodes each node depends on: its requirements and the targets of its get_attribute calls. */
export function dependencies(t: LoadedTemplate): Map<string, Set<string>> {
  const nodes = t.doc.topology_template.node_templates
  const deps = new Map<string, Set<string>>()
  for (const [name, node] of Object.entries(nodes)) {
    const d = new Set<string>()
    for (const req of node.requirements ?? []) for (const target of Object.values(req)) d.add(target)
    for (const [prop, v] of Object.entries(node.properties ?? {})) {
      for (const target of attributeTargets(v)) {
        if (!Object.hasOwn(nodes, target)) t.fail(['topology_template', 'node_templates', name, 'properties', prop], `get_attribute names an unknown node "${target}"`)
        d.add(target)
      }
    }
    deps.set(name, d)
  }
  return deps
}

function attributeTargets(v: unknown): string[] {
  if (!isFunctionCall(v)) {
    if (Array.isArray(v)) return v.flatMap(attributeTargets)
    if (v !== null && typeof v === 'object') return Object.values(v).flatMap(attributeTargets)
    return []
  }
  if ('get_attribute' in v) return [v.get_attribute[0]]
  if ('concat' in v) return v.concat.flatMap(attributeTargets)
  return []
}

/** Topological order (template order among equals); a cycle is an error naming it, at its first node. */
export function realisationOrder(t: LoadedTemplate): string[] {
  const deps = dependencies(t)
  const order: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (n: string, stack: string[]) => {
    if (state.get(n) === 'done') return
    if (state.get(n) === 'visiting') {
      const cycle = [...stack.slice(stack.indexOf(n)), n]
      t.fail(['topology_template', 'node_templates'], `dependency cycle: ${cycle.join(' → ')}`, cycle[0]!)
    }
    state.set(n, 'visiting')
    for (const d of deps.get(n) ?? []) visit(d, [...stack, n])
    state.set(n, 'done')
    order.push(n)
  }
  for (const n of deps.keys()) visit(n, [])
  return order
}

/**
 * Resolves and realises every node in dependency order: substitutes inputs, evaluates get_attribute and
 * concat against the nodes realised so far, re-checks property types, then calls `realise` (which asks
 * the broker, or predicts in a plan). Outputs are evaluated last, with `token_jtis` always added.
 */
export async function realiseTemplate(
  t: LoadedTemplate,
  inputs: Record<string, unknown>,
  realise: (node: ResolvedNode, realised: Readonly<Record<string, Attributes>>) => Promise<Attributes>,
): Promise<Realised> {
  const order = realisationOrder(t)
  const nodes = t.doc.topology_template.node_templates
  const attributes: Record<string, Attributes> = {}
  const evaluate = (v: unknown, path: readonly (string | number)[], self: string | undefined, deps: Set<string> | undefined): unknown => {
    if (!isFunctionCall(v)) {
      if (Array.isArray(v)) return v.map((x, i) => evaluate(x, [...path, i], self, deps))
      if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, evaluate(x, [...path, k], self, deps)]))
      return v
    }
    // Names are the template's, looked up in plain objects: Object.hasOwn, so `constructor` is not Object's.
    if ('get_input' in v) {
      if (!Object.hasOwn(t.doc.topology_template.inputs ?? {}, v.get_input)) t.fail(path, `get_input names an undeclared input "${v.get_input}"`)
      return Object.hasOwn(inputs, v.get_input) ? inputs[v.get_input] : undefined
    }
    if ('get_attribute' in v) {
      const [node, attr, index] = v.get_attribute
      if (deps && !deps.has(node)) t.fail(path, `${self} reads an attribute of ${node}, which it does not depend on`)
      if (!Object.hasOwn(nodes, node)) t.fail(path, `get_attribute names an unknown node "${node}"`)
      const got = Object.hasOwn(attributes, node) ? attributes[node] : undefined
      if (!got) t.fail(path, `get_attribute names ${node}, which is not realised yet`)
      if (!Object.hasOwn(got!, attr)) t.fail(path, `${nodes[node]?.type ?? node} has no attribute "${attr}" (it has ${Object.keys(got!).join(', ')})`)
      const value = got![attr]
      if (index === undefined) return value
      if (!Array.isArray(value)) t.fail(path, `attribute ${node}.${attr} is not a list; it takes no index`)
      if (index >= (value as unknown[]).length) t.fail(path, `attribute ${node}.${attr} has ${(value as unknown[]).length} entries; index ${index} is out of range`)
      return (value as unknown[])[index]
    }
    return v.concat.map((x, i) => {
      const r = evaluate(x, [...path, 'concat', i], self, deps)
      if (r === null || typeof r === 'object') t.fail([...path, 'concat', i], 'concat joins scalar values only')
      return String(r)
    }).join('')
  }

  const deps = dependencies(t)
  for (const name of order) {
    const node = nodes[name]!
    const base = ['topology_template', 'node_templates', name, 'properties']
    const properties = Object.fromEntries(Object.entries(node.properties ?? {}).map(([k, v]) => [k, evaluate(v, [...base, k], name, deps.get(name))]))
    const checked = NODE_TYPES[node.type as NodeTypeName].properties.safeParse(properties)
    if (!checked.success) {
      const i = checked.error.issues[0]!
      const key = i.path[0] as string
      const value = properties[key]
      t.fail([...base, key], `${name}.${key} resolves to ${JSON.stringify(value)?.slice(0, 60)}, which is the wrong type (${i.code === 'invalid_union' ? 'see the node type' : i.message})`)
    }
    const requirements = Object.fromEntries((node.requirements ?? []).map((r) => Object.entries(r)[0]!))
    attributes[name] = await realise({ name, type: node.type as NodeTypeName, properties, requirements }, attributes)
  }

  const outputs: Record<string, unknown> = {}
  for (const [name, o] of Object.entries(t.doc.topology_template.outputs ?? {})) {
    outputs[name] = evaluate(o.value, ['topology_template', 'outputs', name, 'value'], undefined, undefined)
  }
  outputs.token_jtis = Object.fromEntries(order.map((n) => [n, attributes[n]?.issued_token_jtis ?? []]))
  return { order, attributes, outputs }
}

export { TemplateError }
