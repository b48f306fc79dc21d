import { LineCounter, parseDocument, type Document } from 'yaml'
import type { z } from 'zod'
import { positionOf } from '../../../lib/yaml_position.ts'
import { secretLookingName, secretLookingValue } from './secrets.ts'
import { selfReferenceAt } from './self_reference.ts'
import { FunctionCall, isFunctionCall, NODE_TYPES, TemplateDocument, type NodeTypeName } from './schema.ts'

type Path = readonly (string | number)[]

/** A template mistake, located: `FILE:LINE:COL: message`, the form editors jump to. */
export class TemplateError extends Error {
  readonly file: string
  readonly line: number
  readonly col: number
  constructor(file: string, pos: { line: number; col: number }, message: string) {
    super(`${file}:${pos.line}:${pos.col}: ${message}`)
    this.name = 'TemplateError'
    this.file = file
    this.line = pos.line
    this.col = pos.col
  }
}

export interface LoadedTemplate {
  file: string
  doc: TemplateDocument
  /** Position of the node at `path` (or of `key` inside the mapping there). */
  at(path: Path, key?: string): { line: number; col: number }
  fail(path: Path, message: string, key?: string): never
}

/**
 * Parses and checks a template: YAML syntax, the document shape (strict), each node's properties against
 * its type, requirements (name, target exists, target type), and names or values that look like secrets.
 * Functions are checked for shape here and resolved later (resolve_template.ts).
 */
export function loadTemplate(text: string, file: string): LoadedTemplate {
  const lc = new LineCounter()
  const doc: Document = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    throw new TemplateError(file, lc.linePos(e.pos[0]), e.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, ''))
  }
  const at = (path: Path, key?: string) => positionOf(doc, lc, path, key)
  const fail = (path: Path, message: string, key?: string): never => { throw new TemplateError(file, at(path, key), message) }
  let raw: unknown
  // yaml stops at 100 alias expansions (aliases that multiply one another, a billion laughs).
  try { raw = doc.toJS({ maxAliasCount: 100 }) } catch (err) { fail([], `the YAML cannot be expanded: ${(err as Error).message}`) }
  const loop = selfReferenceAt(raw)
  if (loop) fail(loop, 'the value contains itself through this alias; a template holds plain values')
  const parsed = TemplateDocument.safeParse(raw)
  if (!parsed.success) failOnIssue(firstIssue(parsed.error.issues), [], raw, fail)
  const t = parsed.data!
  checkSecrets(t, fail)
  for (const [name, o] of Object.entries(t.topology_template.outputs ?? {})) checkFunctions(o.value, ['topology_template', 'outputs', name, 'value'], fail)

  const nodes = t.topology_template.node_templates
  // Render writes one TRUST_DOMAIN, COLLECTOR_HOST and central manager identity into every bundle: a second
  // central manager would leave the daemons that require it pointed at the other one.
  let centralManager: string | undefined
  for (const [name, node] of Object.entries(nodes)) {
    const base = ['topology_template', 'node_templates', name]
    if (node.type === 'htc.nodes.CentralManager') {
      if (centralManager) fail(base, `${name}: a template has one htc.nodes.CentralManager (${centralManager} is already one); a pool has one collector`, 'type')
      centralManager = name
    }
    const type = NODE_TYPES[node.type as NodeTypeName]
    const props = type.properties.safeParse(node.properties ?? {})
    if (!props.success) failOnIssue(firstIssue(props.error.issues), [...base, 'properties'], node.properties ?? {}, fail)
    const allowed: Record<string, string> = type.requirements
    const seen = new Set<string>()
    node.requirements?.forEach((req, i) => {
      const entries = Object.entries(req)
      if (entries.length !== 1) fail([...base, 'requirements', i], 'a requirement is one "name: node" pair')
      const [kind, target] = entries[0]!
      if (!Object.hasOwn(allowed, kind)) fail([...base, 'requirements', i], `${node.type} takes no requirement "${kind}" (it takes ${Object.keys(allowed).join(', ') || 'none'})`, kind)
      if (seen.has(kind)) fail([...base, 'requirements', i], `requirement "${kind}" is given twice`, kind)
      seen.add(kind)
      // Object.hasOwn: a node named like an Object.prototype member (`constructor`) is not thereby declared.
      const targetNode = Object.hasOwn(nodes, target) ? nodes[target] : undefined
      if (!targetNode) fail([...base, 'requirements', i, kind], `requirement ${kind} names an unknown node "${target}"`)
      if (targetNode!.type !== allowed[kind]) fail([...base, 'requirements', i, kind], `requirement ${kind} must name a ${allowed[kind]}, but ${target} is a ${targetNode!.type}`)
    })
    for (const kind of Object.keys(allowed)) {
      // schedd is optional for pilots (direct attach only); every other requirement is mandatory.
      if (!seen.has(kind) && !(node.type === 'htc.nodes.SlurmPilot' && kind === 'schedd')) fail(base, `${node.type} ${name} needs a "${kind}" requirement`, 'type')
    }
  }
  return { file, doc: t, at, fail }
}

/**
 * An output's value is free (a literal, a list or map, or functions), so the document schema leaves it
 * unchecked; its functions are checked for shape here, because outputs are evaluated last, after the
 * broker has issued everything, and a malformed call would fail only then.
 */
function checkFunctions(v: unknown, path: Path, fail: (path: Path, message: string, key?: string) => never): void {
  if (isFunctionCall(v)) {
    const checked = FunctionCall.safeParse(v)
    const shapes = 'get_input takes a name; get_attribute [node, attribute] or [node, attribute, index]; concat a list of literals, get_input and get_attribute'
    if (!checked.success) fail(path, `${path.slice(1).join('.')}: malformed ${Object.keys(v)[0]} (${shapes})`)
    return
  }
  if (Array.isArray(v)) v.forEach((x, i) => checkFunctions(x, [...path, i], fail))
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) checkFunctions(x, [...path, k], fail)
}

/** A misspelt key also shows up as a missing one; the misspelling is the mistake to report. */
function firstIssue(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!
}

function failOnIssue(i: z.core.$ZodIssue, prefix: Path, value: unknown, fail: (path: Path, message: string, key?: string) => never): never {
  const path = [...prefix, ...(i.path as (string | number)[])]
  if (i.code === 'unrecognized_keys') fail(path, `unknown key "${i.keys[0]}"`, i.keys[0])
  const got = valueAt(value, i.path as (string | number)[])
  if (i.code === 'invalid_union' || i.code === 'invalid_type') {
    const expected = expectedOf(i)
    if (got === undefined) fail(path.slice(0, -1), `missing "${String(path[path.length - 1])}"${expected ? ` (${expected})` : ''}`, String(path[path.length - 1]))
    fail(path, `wrong type: expected ${expected ?? 'another type'}${isFunctionCall(got) ? '' : `, got ${describe(got)}`}`)
  }
  if (i.code === 'invalid_value' && got === undefined) fail(path.slice(0, -1), `missing "${String(path[path.length - 1])}"`, String(path[path.length - 1]))
  fail(path, i.message)
}

function expectedOf(i: z.core.$ZodIssue): string | undefined {
  if (i.code === 'invalid_type') return `${i.expected}`
  if (i.code === 'invalid_union') {
    const first = (i as { errors?: z.core.$ZodIssue[][] }).errors?.[0]?.[0]
    if (first?.code === 'invalid_type') return `${first.expected} or a function (get_input, get_attribute, concat)`
  }
  return undefined
}

function valueAt(v: unknown, path: readonly (string | number)[]): unknown {
  let cur = v
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string | number, unknown>)[p]
  }
  return cur
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list'
  if (v === null) return 'null'
  if (typeof v === 'object') return 'a map'
  return `${typeof v} ${JSON.stringify(v).slice(0, 40)}`
}

/** No secret enters a template: not as an input, a default or a property (they are shown in plans and logs). */
function checkSecrets(t: TemplateDocument, fail: (path: Path, message: string, key?: string) => never): void {
  const inputs = t.topology_template.inputs ?? {}
  for (const [name, def] of Object.entries(inputs)) {
    if (secretLookingName(name)) fail(['topology_template', 'inputs'], `input "${name}" looks like a secret; templates carry references only (name it *_ref and keep the secret with the broker)`, name)
    const why = secretLookingValue(def.default)
    if (why) fail(['topology_template', 'inputs', name, 'default'], `the default of "${name}" looks like ${why}; templates carry no secrets`)
  }
  for (const [name, node] of Object.entries(t.topology_template.node_templates)) {
    for (const [prop, value] of Object.entries(node.properties ?? {})) {
      const base = ['topology_template', 'node_templates', name, 'properties']
      if (secretLookingName(prop)) fail(base, `property "${prop}" looks like a secret; templates carry references only`, prop)
      const why = secretLookingValue(value)
      if (why) fail([...base, prop], `property ${name}.${prop} looks like ${why}; templates carry no secrets`)
    }
  }
  // Outputs are written into manifest.json, which holds no secrets either.
  for (const [name, o] of Object.entries(t.topology_template.outputs ?? {})) {
    const why = secretLookingValue(o.value)
    if (why) fail(['topology_template', 'outputs', name, 'value'], `output ${name} looks like ${why}; templates carry no secrets`)
  }
}
