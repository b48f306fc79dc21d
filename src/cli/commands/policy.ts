import { loadConfig, type Config } from '../../config.ts'
import type { PolicyContext } from '../../policy/compile.ts'
import { policyContextFromConfig } from '../../policy/context.ts'
import { primaryIamIssuer } from '../../services.ts'
import type { DecisionRequest, TokenKind } from '../../policy/decision.ts'
import { explain, targetOf, type Explanation } from '../../policy/explain.ts'
import { formatIssue, loadPolicyDir } from '../../policy/load.ts'
import { CliError, parse, positiveInt, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker policy <check|explain> [options]

policy check [DIR] [--var NAME=VALUE ...]
    Validate every *.yaml policy file in DIR (default: policy_dir from the config).
    Errors are printed as FILE:LINE:COL: message. Exit status: 0 valid, 1 invalid, 2 usage.

policy explain --iss ISSUER --sub SUB --role ROLE [--group G ...] [--scope S ...] [--client-id C]
               [--username U] [--token-type idtoken|scitoken|access_token] [--audience A ...]
               [--request-scope S ...] [--lifetime SECONDS] [--host H] [--param NAME=VALUE ...]
               [--dir DIR] [--var NAME=VALUE ...] [--json]
    Say which rule would allow or deny a request, and why, for every rule in order.
    --iss, --sub, --group, --scope, --client-id and --username describe the caller's IAM token
    (--scope: its scopes); --request-scope is the scope the caller asks the broker for.
    Exit status: 0 allowed, 1 denied, 2 usage.

Common options: --config FILE (or CTB_CONFIG)`

const TOKEN_TYPES: readonly TokenKind[] = ['idtoken', 'scitoken', 'access_token']

export async function policyCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  if (sub === 'check') return check(rest, io)
  if (sub === 'explain') return explainCommand(rest, io)
  throw new CliError(`unknown policy command "${sub}" (see policy --help)`, 2)
}

function keyValues(option: string, values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const kv of values ?? []) {
    const eq = kv.indexOf('=')
    if (eq <= 0) throw new CliError(`--${option} takes NAME=VALUE, got "${kv}"`, 2)
    out[kv.slice(0, eq)] = kv.slice(eq + 1)
  }
  return out
}

function setup(values: { config?: string; var?: string[] }, io: CommandIo): { config: Config; ctx: PolicyContext } {
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  const base = policyContextFromConfig(config, primaryIamIssuer(config))
  const ctx: PolicyContext = { ...base, vars: { ...base.vars, ...keyValues('var', values.var) } }
  return { config, ctx }
}

async function check(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(argv, {
    config: { type: 'string' },
    var: { type: 'string', multiple: true },
  }, true)
  if (values.help) { io.out(HELP); return 0 }
  if (positionals.length > 1) throw new CliError('policy check takes one directory', 2)
  const { config, ctx } = setup(values, io)
  const dir = positionals[0] ?? config.policy_dir
  const r = loadPolicyDir(dir, ctx)
  if (!r.ok) {
    for (const i of r.issues) io.err(formatIssue(i))
    io.err(`${r.issues.length} error${r.issues.length === 1 ? '' : 's'} in ${dir}`)
    return 1
  }
  const p = r.policy
  const grants = p.rules.reduce((n, rule) => n + rule.grants.size + (rule.admin ? 1 : 0), 0)
  const roles = [...p.byRole.keys(), ...(p.adminRules.length ? ['admin'] : [])].sort()
  io.out(`${dir}: OK, ${p.files.length} files, ${p.rules.length} rules, ${grants} grants; roles: ${roles.join(', ')}; digest ${p.digest.slice(0, 12)}`)
  return 0
}

async function explainCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(argv, {
    config: { type: 'string' },
    var: { type: 'string', multiple: true },
    dir: { type: 'string' },
    iss: { type: 'string' },
    sub: { type: 'string' },
    group: { type: 'string', multiple: true },
    scope: { type: 'string', multiple: true },
    'client-id': { type: 'string' },
    username: { type: 'string' },
    role: { type: 'string' },
    'token-type': { type: 'string' },
    audience: { type: 'string', multiple: true },
    'request-scope': { type: 'string', multiple: true },
    lifetime: { type: 'string' },
    host: { type: 'string' },
    param: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  })
  if (values.help) { io.out(HELP); return 0 }
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}" (see policy --help)`, 2)
  if (!values.iss) throw new CliError('--iss is required (the exact issuer of the caller\'s IAM token)', 2)
  if (!values.sub) throw new CliError('--sub is required', 2)
  if (!values.role) throw new CliError('--role is required', 2)
  const tokenType = values['token-type']
  if (tokenType !== undefined && !TOKEN_TYPES.includes(tokenType as TokenKind)) {
    throw new CliError(`--token-type must be one of ${TOKEN_TYPES.join(', ')}, got "${tokenType}"`, 2)
  }
  const { config, ctx } = setup(values, io)
  const dir = values.dir ?? config.policy_dir
  const r = loadPolicyDir(dir, ctx)
  if (!r.ok) {
    for (const i of r.issues) io.err(formatIssue(i))
    throw new CliError(`the policy in ${dir} is invalid; fix it first (policy check)`)
  }
  const scopes = (values.scope ?? []).flatMap((s) => s.split(' ')).filter(Boolean)
  const lifetime = positiveInt('lifetime', values.lifetime)
  const requestScopes = (values['request-scope'] ?? []).flatMap((s) => s.split(' ')).filter(Boolean)
  const req: DecisionRequest = {
    subject: {
      iss: values.iss,
      sub: values.sub,
      ...(values['client-id'] ? { client_id: values['client-id'] } : {}),
      groups: values.group ?? [],
      scopes,
      exp: Number.MAX_SAFE_INTEGER,
      ...(values.username ? { preferred_username: values.username } : {}),
      claims: {},
    },
    role: values.role,
    ...(tokenType ? { tokenKind: tokenType as TokenKind } : {}),
    audience: values.audience ?? [],
    ...(requestScopes.length ? { scopes: requestScopes } : {}),
    ...(values.host ? { host: values.host } : {}),
    ...(lifetime !== undefined ? { lifetime } : {}),
    params: keyValues('param', values.param),
  }
  const result = explain(r.policy, req)
  if (values.json) io.out(JSON.stringify(result, null, 2))
  else io.out(renderExplanation(result))
  return result.decision.allow ? 0 : 1
}

/** Human-readable explanation: the verdict first, then every rule in order. */
export function renderExplanation(e: Explanation): string {
  const d = e.decision
  const lines = [
    d.allow
      ? `ALLOW by rule ${d.ruleId}: ${d.tokenKind} for ${d.identity}; scope ${d.scopes.join(' ')}; ${targetOf(d)}; lifetime ${d.lifetime}s${d.trimmed ? ` (trimmed: ${d.trimmed.join(', ')})` : ''}`
      : `DENY (${d.error})${d.ruleId ? ` by rule ${d.ruleId}` : ''}: ${d.reason}`,
    `policy ${e.policyDigest.slice(0, 12)}, ${e.rules.length} rules:`,
  ]
  for (const t of e.rules) {
    lines.push(`  ${t.decisive ? '*' : ' '} ${t.ruleId} (${t.source}): ${t.outcome}`)
    for (const why of t.reasons) lines.push(`      ${why}`)
  }
  if (!e.rules.some((t) => t.decisive)) lines.push('  (no rule grants this role to this caller: default deny)')
  return lines.join('\n')
}
