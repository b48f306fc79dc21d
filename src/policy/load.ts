import { createHash } from 'node:crypto'
import { closeSync, constants, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs'
import { LineCounter, parseDocument, visit, type Document } from 'yaml'
import { OperatorError } from '../errors.ts'
import { positionOf, zodIssueMessage } from '../lib/yaml_position.ts'
import { sharedCallerPathIssues } from './caller_paths.ts'
import { compilePolicy, type Policy, type PolicyContext, type SourcePosition } from './compile.ts'
import { PolicyFileSchema, type Rule } from './schema.ts'
import { modeString, replaceableByOthers, wayOf, writableByOthers } from '../lib/file_mode.ts'
import { shownPath } from '../lib/terminal_text.ts'

/**
 * Reads every policy file in a directory, validates it, and compiles it. Every error carries
 * FILE:LINE:COL: YAML syntax errors from the parser, schema errors by mapping the zod issue path back
 * to the YAML node, so `policy check` output can be clicked in an editor.
 */

export interface PolicyIssue {
  file: string
  /** 1-based; absent for errors about the directory itself. */
  line?: number
  col?: number
  message: string
}

export type LoadResult =
  | { ok: true; policy: Policy }
  | { ok: false; issues: PolicyIssue[] }

/** `FILE:LINE:COL: message`, the format compilers and editors understand. */
export function formatIssue(i: PolicyIssue): string {
  return i.line === undefined ? `${i.file}: ${i.message}` : `${i.file}:${i.line}:${i.col}: ${i.message}`
}

/**
 * Policy files: `*.yaml` and `*.yml`, not hidden (editor temp files, Kubernetes `..data`), sorted by name.
 * Whatever else carries such a name (a directory, a FIFO) is listed too, so reading refuses it: skipped, its
 * rules would drop out of the policy in force with nothing said.
 */
export function listPolicyFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name) && !name.startsWith('.'))
    .sort()
}

/** The most a policy file may hold; real ones are a few KiB, and each is read whole on the event loop. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024

/**
 * One policy file's text, or why it cannot be a policy file. Opened without blocking (a FIFO would otherwise
 * wait for a writer and stop the broker mid-reload), checked to be a regular file (a symlink to /dev/zero
 * would be read until memory ran out), and read up to the limit only.
 */
function readPolicyFile(file: string): { text: string } | { refused: string } {
  let fd: number
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    return { refused: `cannot read: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) return { refused: 'not a regular file; a policy file is a regular file (or a symlink to one)' }
    // Whoever may write a policy file may grant any role; group write is left to the admins' group.
    if (writableByOthers(file, st.mode)) return { refused: `writable by every user (mode ${modeString(st.mode)}), who could grant themselves any role; chmod o-w ${file}` }
    // A link out of policy_dir (checked itself) names a file whose own directory decides who may swap it.
    const swappable = replaceableByOthers(file)
    // Both may be where a link in an open directory leads: whatever its writer named them, escapes and all.
    if (swappable) return { refused: `names ${shownPath(swappable.real)}, ${wayOf(swappable)} ${shownPath(swappable.dir)}, a directory every user may write (mode ${modeString(swappable.mode)}), where anyone could put a file of their own in its place; chmod o-w ${shownPath(swappable.dir)}` }
    const tooBig = (n: number) => ({ refused: `${n} bytes, above the ${MAX_POLICY_FILE_BYTES} a policy file may hold` })
    if (st.size > MAX_POLICY_FILE_BYTES) return tooBig(st.size)
    // One byte more than the limit, so a file that grew after fstat is still caught.
    const buf = Buffer.alloc(MAX_POLICY_FILE_BYTES + 1)
    let n = 0
    for (let got = -1; got !== 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, null)
    if (n > MAX_POLICY_FILE_BYTES) return tooBig(n)
    return { text: buf.toString('utf8', 0, n) }
  } catch (err) {
    return { refused: `cannot read: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }
  } finally {
    closeSync(fd)
  }
}

type Path = readonly PropertyKey[]

const VAR_REF = /\$\{([^}]*)\}/g

/** Replaces `${NAME}` in every string scalar from `vars`; unknown names are errors at the scalar. */
function substituteVars(doc: Document, lc: LineCounter, file: string, vars: Readonly<Record<string, string>>, issues: PolicyIssue[]): void {
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return
      node.value = node.value.replace(VAR_REF, (whole, name: string) => {
        const v = /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? vars[name] : undefined
        if (v === undefined) {
          const at = lc.linePos(node.range?.[0] ?? 0)
          const known = Object.keys(vars).sort().join(', ') || '(none)'
          issues.push({ file, ...at, message: `unknown variable ${whole}; set policy.vars.${name} in the broker config (known: ${known})` })
          return whole
        }
        return v
      })
    },
  })
}

/** Checks that need broker configuration: lifetime caps and the default SciToken profile. */
function contextIssues(rules: readonly Rule[], ctx: PolicyContext): { path: Path; message: string }[] {
  const out: { path: Path; message: string }[] = []
  rules.forEach((rule, i) => rule.grants.forEach((g, j) => {
    const at = ['rules', i, 'grants', j] as const
    if (!g.token_kinds || !g.lifetime) return
    for (const kind of ['idtoken', 'scitoken'] as const) {
      const cap = ctx.maxLifetime[kind]
      if (g.token_kinds.includes(kind) && cap !== undefined && g.lifetime.max > cap) {
        out.push({ path: [...at, 'lifetime', 'max'], message: `max lifetime ${g.lifetime.max}s exceeds the broker's ${kind}.max_lifetime of ${cap}s` })
      }
    }
    const profile = g.profile ?? ctx.scitokenProfile
    if (g.token_kinds.includes('scitoken') && profile === 'scitokens2' && g.scopes?.length && !g.scopes.some((s) => /^condor:\//i.test(s)) && g.scopes.some((s) => s.startsWith('compute.'))) {
      out.push({ path: [...at, 'scopes'], message: 'the broker mints SciTokens 2.0 by default, where HTCondor does not translate compute.*; add condor:/ scopes or set profile: wlcg' })
    }
    // scitokens-cpp turns storage.<op>:/p into read:/p (or write:/p) in WLCG tokens only: in a scitoken:2.0
    // token it stays storage.read:/p, an authorization no enforcer asks for, so the token reads nothing.
    const storage = g.token_kinds.includes('scitoken') && profile === 'scitokens2' ? g.scopes?.find((s) => s.startsWith('storage.')) : undefined
    if (storage !== undefined) {
      const op = storage.slice(8, storage.indexOf(':'))
      const sciTokens = op === 'read' ? 'read' : op === 'create' || op === 'modify' ? 'write' : undefined
      const instead = sciTokens ? `write ${sciTokens}${storage.slice(storage.indexOf(':'))} or set profile: wlcg` : 'set profile: wlcg'
      out.push({ path: [...at, 'scopes'], message: `${storage} authorizes nothing in a SciTokens 2.0 token; ${instead} (scitokens-cpp reads storage.* scopes in WLCG tokens only)` })
    }
  }))
  return out
}

interface ParsedFile {
  rules: { rule: Rule; source: SourcePosition; idAt: { line: number; col: number } }[]
  issues: PolicyIssue[]
}

/** Parses and validates one file's text. Exported for tests; use `loadPolicyDir` otherwise. */
export function parsePolicyFile(file: string, text: string, ctx: PolicyContext): ParsedFile {
  const issues: PolicyIssue[] = []
  const lc = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    // After the first syntax error the parser's further complaints are mostly its own confusion.
    const e = doc.errors[0]!
    const more = doc.errors.length > 1 ? ` (${doc.errors.length - 1} more YAML errors follow from it)` : ''
    issues.push({ file, ...lc.linePos(e.pos[0]), message: `${e.message.split('\n')[0]!}${more}` })
    return { rules: [], issues }
  }
  substituteVars(doc, lc, file, ctx.vars, issues)
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    issues.push({ file, line: 1, col: 1, message: (err as Error).message })
    return { rules: [], issues }
  }
  if (value === null || value === undefined) {
    issues.push({ file, line: 1, col: 1, message: 'empty policy file; expected "version: 1" and "rules:"' })
    return { rules: [], issues }
  }
  const parsed = PolicyFileSchema.safeParse(value)
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const { message, key } = zodIssueMessage(i)
      issues.push({ file, ...positionOf(doc, lc, i.path, key), message: i.path.length ? `${i.path.join('.')}: ${message}` : message })
    }
    return { rules: [], issues: byPosition(issues) }
  }
  for (const ci of contextIssues(parsed.data.rules, ctx)) {
    issues.push({ file, ...positionOf(doc, lc, ci.path), message: `${ci.path.join('.')}: ${ci.message}` })
  }
  const rules = parsed.data.rules.map((rule, i) => ({
    rule,
    source: { file, ...positionOf(doc, lc, ['rules', i]) },
    idAt: positionOf(doc, lc, ['rules', i, 'id']),
  }))
  return { rules, issues: byPosition(issues) }
}

function byPosition(issues: PolicyIssue[]): PolicyIssue[] {
  return issues.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
}

/**
 * Loads all policy files in `dir` into one Policy, or returns every problem found (never throws for
 * bad content). Rule ids must be unique across files.
 * @see docs/policies.md
 */
export function loadPolicyDir(dir: string, ctx: PolicyContext): LoadResult {
  let names: string[]
  try {
    names = listPolicyFiles(dir)
  } catch (err) {
    return { ok: false, issues: [{ file: dir, message: `cannot read policy directory: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }] }
  }
  if (names.length === 0) return { ok: false, issues: [{ file: dir, message: 'no policy files (*.yaml); with no policy every request is denied' }] }
  // The directory may be gone by now (renamed away, a ConfigMap swap): a reload that throws here would end
  // serve from its SIGHUP or watch handler, where one that reports keeps the policy in force.
  let dirMode: number
  let above: ReturnType<typeof replaceableByOthers>
  try {
    dirMode = statSync(dir).mode
    above = replaceableByOthers(dir)
  } catch (err) {
    return { ok: false, issues: [{ file: dir, message: `cannot read policy directory: ${(err as NodeJS.ErrnoException).code ?? 'error'}` }] }
  }
  // A directory anyone may write takes a new file from anyone (the sticky bit only stops removing others').
  if (writableByOthers(dir, dirMode)) {
    return { ok: false, issues: [{ file: dir, message: `policy directory writable by every user (mode ${modeString(dirMode)}), who could add a policy file granting any role; chmod o-w ${dir}` }] }
  }
  if (above) {
    const named = wayOf(above) === 'under' ? 'under' : `names ${shownPath(above.real)}, by way of`
    return { ok: false, issues: [{ file: dir, message: `policy directory ${named} ${shownPath(above.dir)}, a directory every user may write (mode ${modeString(above.mode)}), where anyone could put a directory of their own in its place; chmod o-w ${shownPath(above.dir)}` }] }
  }
  const issues: PolicyIssue[] = []
  const all: { rule: Rule; source: SourcePosition }[] = []
  const ids = new Map<string, string>()
  const hash = createHash('sha256')
  const files: string[] = []
  for (const name of names) {
    // Not path.join, which takes `..` in `dir` out by the text and would name another file after a link.
    const file = `${dir.replace(/\/+$/, '')}/${name}`
    const read = readPolicyFile(file)
    if ('refused' in read) {
      issues.push({ file, message: read.refused })
      continue
    }
    const text = read.text
    files.push(file)
    hash.update(name).update('\0').update(text).update('\0')
    const parsed = parsePolicyFile(file, text, ctx)
    issues.push(...parsed.issues)
    for (const r of parsed.rules) {
      const first = ids.get(r.rule.id)
      if (first) {
        issues.push({ file, ...r.idAt, message: `duplicate rule id "${r.rule.id}" (first defined at ${first})` })
        continue
      }
      ids.set(r.rule.id, `${file}:${r.source.line}:${r.source.col}`)
      all.push({ rule: r.rule, source: r.source })
    }
  }
  if (issues.length === 0) for (const i of sharedCallerPathIssues(all)) issues.push({ file: i.source.file, line: i.source.line, col: i.source.col, message: i.message })
  if (issues.length > 0) return { ok: false, issues }
  return { ok: true, policy: compilePolicy(all, ctx, { files, digest: hash.digest('hex') }) }
}

/** Loads policies or throws an OperatorError listing every problem, one `FILE:LINE:COL: message` per line. */
export function loadPolicies(dir: string, ctx: PolicyContext): Policy {
  const r = loadPolicyDir(dir, ctx)
  if (!r.ok) throw new OperatorError('EPOLICY', `invalid policy in ${dir}:\n${r.issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`)
  return r.policy
}
