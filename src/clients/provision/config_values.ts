import type { LoadedTemplate } from './template/load_template.ts'
import type { ResolvedNode } from './template/resolve_template.ts'

/**
 * Properties render writes into a node's HTCondor configuration (50-broker.conf) or its mapfile, and the
 * shape each must have. HTCondor ends a config value at the end of its line, joins the next line to one
 * that ends in `\` and expands `$(…)` in it; ALLOW lists and SCITOKENS_SERVER_AUDIENCE split at commas and
 * spaces; a mapfile line is fields split at spaces. A value carrying any of these would write knobs,
 * ALLOW entries or mapfile lines of its own into every bundle, so each is held to plain words here, before
 * the broker is asked for anything.
 */
const HOST = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$/
const TRUST_DOMAIN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$/
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$/
/** COLLECTOR_NAME runs to the end of its line: words separated by spaces, none leading or trailing. */
const POOL_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9 _.@:-]{0,126}[A-Za-z0-9_.@:-])?$/
const LABEL = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
/** A group named in a mapfile comment line: one line, no `\` (a comment is free text, but still ends at its line). */
const GROUP = /^[\x20-\x5b\x5d-\x7e]{1,255}$/
/** A URI without spaces, commas, quotes, backslashes or `$`. */
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~:/?#@!&'()*+;=%[\]-]{1,1000}$/

type Rule = readonly [path: readonly string[], shape: RegExp, says: string]

const RULES: Partial<Record<ResolvedNode['type'], readonly Rule[]>> = {
  'htc.nodes.Compute': [[['address'], HOST, 'a DNS name (letters, digits, "." and "-"; {n} for a scaled startd)']],
  'htc.nodes.CentralManager': [
    [['trust_domain'], TRUST_DOMAIN, 'a host-like name (letters, digits, ".", "_", ":", "-")'],
    [['pool_name'], POOL_NAME, 'words of letters, digits, ".", "_", "@", ":", "-" separated by spaces'],
  ],
  'htc.nodes.Schedd': [
    [['name'], NAME, 'one word of letters, digits, ".", "_", "@", ":", "-"'],
    [['audience'], URI, 'one URI without spaces, commas, quotes, backslashes or "$"'],
    [['user_mapping', 'scitokens_issuer'], URI, 'one URI without spaces, commas, quotes, backslashes or "$"'],
    [['user_mapping', 'subject_domain'], HOST, 'a domain name (letters, digits, "." and "-")'],
    [['user_mapping', 'groups'], GROUP, 'a list of groups, each printable characters without "\\"'],
  ],
  'htc.nodes.Startd': [[['site'], LABEL, 'a site label (letters, digits, ".", "_", "-")']],
}

/**
 * Refuses, at its property, a resolved value that would not stay one plain value in the HTCondor
 * configuration or mapfile render writes (a newline, a trailing backslash, a comma or space in a list…).
 */
export function checkConfigValues(t: LoadedTemplate, n: ResolvedNode): void {
  for (const [path, shape, says] of RULES[n.type] ?? []) {
    let v: unknown = n.properties
    for (const p of path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[p] : undefined
    if (v === undefined) continue
    // A list (the groups) is written item by item: each must have the shape.
    const texts = Array.isArray(v) ? v.map(String) : [String(v)]
    // `{n}` stands for the index of a scaled startd's host; it is replaced before anything is written.
    if (texts.every((text) => shape.test(n.type === 'htc.nodes.Compute' ? text.replaceAll('{n}', '1') : text))) continue
    const written = path.join('.')
    t.fail(['topology_template', 'node_templates', n.name, 'properties', ...path],
      `${n.name}.${written} (${JSON.stringify(v).slice(0, 60)}) must be ${says}: it is written into the HTCondor configuration`)
  }
}
