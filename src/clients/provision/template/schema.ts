import { z } from 'zod'

/**
 * The cluster template: a strict subset of TOSCA Simple Profile 1.3 with our own node types. Every
 * mapping is strict (an unknown key is an error at its line and column). A property value may be a
 * literal of its type or a function (`get_input`, `get_attribute`, `concat`), checked again once
 * functions are resolved. See docs/provisioning.md.
 */

export const TOSCA_VERSION = 'tosca_simple_yaml_1_3'
const NAME = /^[a-z][a-z0-9_]*$/
const Name = z.string().regex(NAME, 'names are lower-case letters, digits and _, starting with a letter')

const GetInput = z.strictObject({ get_input: Name })
const GetAttribute = z.strictObject({
  get_attribute: z.union([z.tuple([Name, Name]), z.tuple([Name, Name, z.number().int().nonnegative()])]),
})
/** Functions are literals-only arguments; they nest only inside concat. */
const Concat = z.strictObject({ concat: z.array(z.union([z.string(), z.number(), z.boolean(), GetInput, GetAttribute])).min(1) })
export const FunctionCall = z.union([GetInput, GetAttribute, Concat])
export type FunctionCall = z.infer<typeof FunctionCall>

export function isFunctionCall(v: unknown): v is FunctionCall {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const keys = Object.keys(v)
  return keys.length === 1 && ['get_input', 'get_attribute', 'concat'].includes(keys[0]!)
}

const fn = <T extends z.ZodType>(t: T) => z.union([t, FunctionCall])
const Str = fn(z.string().min(1))
const Int = fn(z.number().int())
const Bool = fn(z.boolean())
const StrList = fn(z.array(z.string().min(1)).min(1))

export const INPUT_TYPES = ['string', 'integer', 'boolean', 'list', 'map'] as const

const Constraint = z.union([
  z.strictObject({ in_range: z.tuple([z.number(), z.number()]) }),
  z.strictObject({ valid_values: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1) }),
  z.strictObject({ pattern: z.string().min(1) }),
])
export type Constraint = z.infer<typeof Constraint>

export const InputDefinition = z.strictObject({
  type: z.enum(INPUT_TYPES),
  description: z.string().optional(),
  default: z.unknown().optional(),
  required: z.boolean().optional(),
  constraints: z.array(Constraint).optional(),
  entry_schema: z.strictObject({ type: z.enum(['string', 'integer', 'boolean']) }).optional(),
})
export type InputDefinition = z.infer<typeof InputDefinition>

/** Per node type: its properties (strict) and the requirements it takes (name → target type). */
export const NODE_TYPES = {
  'htc.nodes.Compute': {
    properties: z.strictObject({
      /** The host's DNS name; with `{n}` it stands for several hosts (a scaled startd fills n = 1..count). */
      address: Str,
      /** IPv4 addresses to certify beside the name (policy must allow them). */
      ip_addresses: StrList.optional(),
      /** Behind NAT: daemons on it register with the collector's CCB. */
      nat: Bool.optional(),
    }),
    requirements: {},
  },
  'htc.nodes.CentralManager': {
    properties: z.strictObject({
      pool_name: Str,
      trust_domain: Str,
      /** The collector also serves CCB for nodes behind NAT (default true). */
      ccb: Bool.optional(),
      /** Where the operator keeps the pool signing key (installed out of band into passwords.d); a reference, never the key. */
      signing_key_ref: Str,
      site: Str.optional(),
    }),
    requirements: { host: 'htc.nodes.Compute' },
  },
  'htc.nodes.Schedd': {
    properties: z.strictObject({
      name: Str,
      site: Str.optional(),
      user_mapping: fn(z.strictObject({ scitokens_issuer: Str, subject_domain: Str, groups: StrList.optional() })).optional(),
      audience: Str.optional(),
    }),
    requirements: { host: 'htc.nodes.Compute', collector: 'htc.nodes.CentralManager' },
  },
  'htc.nodes.Startd': {
    properties: z.strictObject({
      site: Str,
      count: Int.optional(),
      partitionable: Bool.optional(),
    }),
    requirements: { host: 'htc.nodes.Compute', collector: 'htc.nodes.CentralManager' },
  },
  'htc.nodes.SlurmPilot': {
    properties: z.strictObject({
      site: Str,
      partition: Str,
      account: Str.optional(),
      nodes: Int.optional(),
      cpus: Int,
      mem_mb: Int,
      walltime_s: Int,
      queue_estimate_s: Int.optional(),
      drain_margin_s: Int.optional(),
      idle_shutdown_s: Int.optional(),
      /** Requeues of the job whose pilots may still redeem (the script's --max-requeues; default 2, as pilot.max_restarts). */
      max_requeues: Int.optional(),
      allowed_owners: StrList,
      /** Paths on the SLURM site: logs, the staged enrolment credential, the broker's TLS CA. */
      log_dir: Str,
      enrolment_file: Str,
      broker_ca_file: Str,
      local_dir: Str.optional(),
      /**
       * What each node runs once it holds its token (default `condor_master -f`): e.g. condor_master by its
       * full path on a site that has no HTCondor on PATH. Words of a restricted alphabet, never shell syntax.
       */
      command: Str.optional(),
      /** Which site credential (an IAM client at the site) this group uses; a reference only. */
      site_credential_ref: Str,
    }),
    requirements: { collector: 'htc.nodes.CentralManager', schedd: 'htc.nodes.Schedd' },
  },
} as const

export type NodeTypeName = keyof typeof NODE_TYPES
export const NODE_TYPE_NAMES = Object.keys(NODE_TYPES) as NodeTypeName[]

export const NodeTemplate = z.strictObject({
  type: z.enum(NODE_TYPE_NAMES as [NodeTypeName, ...NodeTypeName[]]),
  description: z.string().optional(),
  properties: z.record(z.string(), z.unknown()).optional(),
  requirements: z.array(z.record(z.string(), z.string())).optional(),
})

export const TemplateDocument = z.strictObject({
  tosca_definitions_version: z.literal(TOSCA_VERSION),
  metadata: z.strictObject({ template_name: z.string().min(1), template_version: z.string().min(1) }),
  description: z.string().optional(),
  topology_template: z.strictObject({
    inputs: z.record(Name, InputDefinition).optional(),
    node_templates: z.record(Name, NodeTemplate).refine((m) => Object.keys(m).length > 0, 'a template has at least one node'),
    outputs: z.record(Name, z.strictObject({ value: z.unknown(), description: z.string().optional() })).optional(),
  }),
})
export type TemplateDocument = z.infer<typeof TemplateDocument>
