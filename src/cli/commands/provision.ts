import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { discoverBearerToken } from '../../clients/bearer_token_discovery.ts'
import { BrokerCallError, BrokerClient, fetchWithCa, sameBrokerUrl, type Fetch, type RetryWait } from '../../clients/provision/broker_client.ts'
import { planCluster } from '../../clients/provision/plan.ts'
import { renderCluster, type Manifest, type ManifestCertificate, type ManifestToken } from '../../clients/provision/render.ts'
import { manifestDisagreements } from '../../clients/provision/manifest_check.ts'
import { teardown } from '../../clients/provision/teardown.ts'
import { TemplateError } from '../../clients/provision/template/load_template.ts'
import { outputExists, writeBundles } from '../../clients/provision/write_bundles.ts'
import { systemClock } from '../../lib/clock.ts'
import { CliError, parse, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker provision <render|plan|teardown> [options]

  provision render TEMPLATE --inputs FILE --broker URL --out DIR [--ca-file F]
      Per node a bundle (condor_config.d/, tokens.d/, certs/, cloud-init user-data), per SLURM pilot
      group the sbatch script and its enrolment credential, and manifest.json (every token's jti, sub,
      role, node and expiry; every certificate's serial). Written atomically: all of DIR or nothing.
      On failure, whatever the broker already issued is revoked again (needs the admin grant).
  provision plan TEMPLATE --inputs FILE --broker URL [--ca-file F] [--json]
      What render would request and what the policy answers now (policy explain; admin grant needed).
      Mints nothing.
  provision teardown --manifest FILE --broker URL [--ca-file F]
      Revokes every token (by jti) and certificate (by serial) the manifest lists (admin grant needed).

The operator's IAM access token is found by WLCG bearer token discovery: BEARER_TOKEN, BEARER_TOKEN_FILE,
$XDG_RUNTIME_DIR/bt_u$UID, /tmp/bt_u$UID. --ca-file is the broker's TLS CA (default: the system's).
Templates and inputs carry names and references only; a value that looks like a secret is refused.`

/**
 * `guard` runs before every request of the guarded client; `stop`, once aborted, ends its wait for a 503's
 * Retry-After at once, so that the guard is met now rather than after up to 30 s. The unguarded client
 * (a failed render's revocations) keeps its waits: those run to their end by design.
 */
function client(values: { broker?: string; 'ca-file'?: string }, io: CommandIo, guard?: () => void, stop?: AbortSignal): { broker: BrokerClient; bearer: string; unguarded: BrokerClient } {
  if (!values.broker) throw new CliError('--broker URL is required (see provision --help)', 2)
  if (!/^https:\/\//.test(values.broker)) throw new CliError('--broker must be an https:// URL', 2)
  let found
  try { found = discoverBearerToken(io.env, process.getuid?.() ?? 0) } catch (err) { throw new CliError((err as Error).message) }
  let fetch
  try { fetch = fetchWithCa(values['ca-file']) } catch (err) { throw new CliError(`cannot read --ca-file ${values['ca-file']}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`) }
  const guarded: Fetch = guard ? (url, init) => { guard(); return fetch(url, init) } : fetch
  // Each wait is said as it begins: a render held up to 30 s a wait would otherwise look hung.
  const onRetry = (w: RetryWait) => io.err(`condor-token-broker: the broker answered 503 temporarily_unavailable to ${w.method} ${w.path}; asking again in ${w.seconds} s (attempt ${w.attempt} of ${w.attempts})`)
  const broker = new BrokerClient({ url: values.broker, bearer: found.token, fetch: guarded, onRetry, ...(stop ? { sleep: (ms: number) => sleepUnless(stop, ms) } : {}) })
  return { broker, bearer: found.token, unguarded: new BrokerClient({ url: values.broker, bearer: found.token, fetch, onRetry }) }
}

/** Waits `ms`, or less if `signal` is aborted meanwhile (or already was). */
function sleepUnless(signal: AbortSignal, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) { resolve(); return }
    const done = () => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

function readInputs(file: string | undefined): Record<string, unknown> {
  if (!file) throw new CliError('--inputs FILE is required (see provision --help)', 2)
  let v: unknown
  try { v = parseYaml(readFileSync(file, 'utf8')) } catch (err) { throw new CliError(`${file}: ${(err as Error).message.split('\n')[0]}`) }
  if (v === null || v === undefined) return {}
  if (typeof v !== 'object' || Array.isArray(v)) throw new CliError(`${file}: the inputs file is a map of input name to value`)
  return v as Record<string, unknown>
}

function readText(file: string | undefined, what: string): string {
  if (!file) throw new CliError(`${what} is required (see provision --help)`, 2)
  try { return readFileSync(file, 'utf8') } catch (err) { throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`) }
}

/** Template, input and broker failures become one line; anything else is a bug and propagates. */
async function oneLine<T>(f: () => Promise<T>): Promise<T> {
  try { return await f() } catch (err) {
    if (err instanceof TypeError && err.message === 'fetch failed') {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause
      throw new CliError(`cannot reach the broker: ${cause?.code ?? cause?.message ?? 'network error'}`)
    }
    if (err instanceof TemplateError || err instanceof BrokerCallError || err instanceof CliError) throw err instanceof CliError ? err : new CliError(err.message)
    if (err instanceof Error && /^[^\n]+: /.test(err.message) && !(err instanceof TypeError) && !(err instanceof RangeError) && !(err instanceof ReferenceError)) throw new CliError(err.message)
    throw err
  }
}

/** `provision`: a client of the broker over HTTP (src/clients/provision); docs/provisioning.md. */
export async function provisionCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  const { values, positionals } = parse(rest, {
    inputs: { type: 'string' }, broker: { type: 'string' }, out: { type: 'string' }, 'ca-file': { type: 'string' },
    manifest: { type: 'string' }, json: { type: 'boolean' },
  }, true)
  if (values.help) { io.out(HELP); return 0 }
  switch (sub) {
    case 'render': {
      const templateFile = positionals[0]
      const templateText = readText(templateFile, 'TEMPLATE')
      const inputs = readInputs(values.inputs)
      if (!values.out) throw new CliError('--out DIR is required (see provision --help)', 2)
      // Checked before anything is minted: writeBundles checks again at the end, but tokens and certificates
      // issued for an output that cannot be written would only be revoked again.
      let taken: boolean
      // lstat fails other than by absence where --out can never be made (ENOTDIR: a parent is a file; EACCES).
      try { taken = outputExists(values.out) } catch (err) {
        throw new CliError(`cannot use --out ${values.out}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (a directory is created there)`, 1)
      }
      if (taken) throw new CliError(`${values.out} exists; choose a new --out directory (output is never merged into an old one)`, 1)
      // SIGINT or SIGTERM (Ctrl-C, a CI job's timeout) would end the process between two broker calls, leaving
      // what was issued valid and listed nowhere. Held instead: the next call fails, and the failure path below
      // revokes what was issued. A signal during that revocation is held too, so it runs to its end.
      let stoppedBy: NodeJS.Signals | undefined
      // A signal also cuts short a wait for a 503's Retry-After: the guard then refuses the next request at once.
      const stop = new AbortController()
      const onStop = (signal: NodeJS.Signals) => { stoppedBy ??= signal; stop.abort() }
      const { broker, unguarded } = client(values, io, () => {
        if (stoppedBy) throw new CliError(`render stopped by ${stoppedBy}`, stoppedBy === 'SIGINT' ? 130 : 143)
      }, stop.signal)
      process.on('SIGINT', onStop)
      process.on('SIGTERM', onStop)
      const issued: { tokens: ManifestToken[]; certificates: ManifestCertificate[] } = { tokens: [], certificates: [] }
      try {
        const { bundles, manifest } = await oneLine(() => renderCluster({ templateText, templateFile: templateFile!, inputs, inputsFile: values.inputs!, broker, now: systemClock.now() }, issued))
        await oneLine(async () => writeBundles(values.out!, bundles, manifest))
        io.out(`wrote ${bundles.length} bundles to ${values.out}: ${manifest.tokens.length} tokens, ${manifest.certificates.length} certificates (manifest.json lists their ids)`)
        return 0
      } catch (err) {
        // Nothing was written: take back what the broker issued so no credential outlives the failed run.
        if (issued.tokens.length + issued.certificates.length > 0) {
          const r = await teardown({ tokens: issued.tokens, certificates: issued.certificates, template: { name: 'failed render', version: '' } }, unguarded, 'provision render failed')
          io.err(`render failed after the broker issued ${issued.tokens.length} tokens and ${issued.certificates.length} certificates; revoked ${r.revokedTokens.length + r.revokedCertificates.length}${r.failures.length ? `, could not revoke: ${r.failures.join('; ')}` : ''}`)
        }
        throw err
      } finally {
        process.off('SIGINT', onStop)
        process.off('SIGTERM', onStop)
      }
    }
    case 'plan': {
      const templateFile = positionals[0]
      const templateText = readText(templateFile, 'TEMPLATE')
      const inputs = readInputs(values.inputs)
      const { broker, bearer } = client(values, io)
      const steps = await oneLine(() => planCluster({ templateText, templateFile: templateFile!, inputs, inputsFile: values.inputs!, broker, bearer }))
      if (values.json) { io.out(JSON.stringify({ steps }, null, 2)); return steps.some((s) => s.answer === 'deny') ? 1 : 0 }
      for (const s of steps) {
        io.out(`${s.answer.padEnd(5)} ${s.node}: ${s.request} role=${s.role}${s.host ? ` host=${s.host}` : ''}${s.site ? ` site=${s.site}` : ''}${s.rule ? ` rule=${s.rule}` : ''}${s.identity ? ` sub=${s.identity}` : ''}${s.pilot_count !== undefined ? ` pilot_count=${s.pilot_count} lifetime=${s.lifetime}s` : ''}${s.reason ? ` (${s.reason})` : ''}`)
      }
      return steps.some((s) => s.answer === 'deny') ? 1 : 0
    }
    case 'teardown': {
      const text = readText(values.manifest, '--manifest FILE')
      let manifest: Manifest
      try { manifest = JSON.parse(text) as Manifest } catch { throw new CliError(`${values.manifest}: not JSON`) }
      if (!isManifest(manifest)) throw new CliError(`${values.manifest}: not a provisioning manifest (a template name, tokens with jti, node and kind, certificates with serial and node)`)
      const { broker } = client(values, io)
      // The broker records a revocation of any jti: sent to another broker than the one that issued them, a
      // teardown would report the tokens revoked while they stay valid where they are used.
      const issuer = (manifest as { broker?: unknown }).broker
      if (issuer !== undefined && (typeof issuer !== 'string' || !sameBrokerUrl(issuer, broker.base))) {
        throw new CliError(`${values.manifest}: its tokens and certificates were issued by ${String(issuer)}, not --broker ${values.broker} (revoking them there would end nothing)`)
      }
      // Checked in full before anything is revoked: a hand-edited entry would otherwise revoke another's credential.
      const disagreements = await oneLine(() => manifestDisagreements(manifest, broker))
      if (disagreements.length > 0) {
        for (const d of disagreements) io.err(`condor-token-broker: ${values.manifest}: ${d}`)
        throw new CliError(`${values.manifest} lists what the broker did not issue as it says; nothing was revoked (teardown revokes only a manifest as render wrote it)`)
      }
      const r = await teardown(manifest, broker)
      io.out(`revoked ${r.revokedTokens.length} tokens and ${r.revokedCertificates.length} certificates`)
      if (r.failures.length) { for (const f of r.failures) io.err(`condor-token-broker: ${f}`); return 1 }
      return 0
    }
    default:
      throw new CliError(`unknown provision command "${sub}" (see provision --help)`, 2)
  }
}

/** What teardown reads of a manifest, checked before anything is revoked: a hand-edited file is input. */
function isManifest(m: unknown): m is Manifest {
  const o = m as { template?: { name?: unknown }; tokens?: unknown; certificates?: unknown } | null
  const entry = (v: unknown, id: string) => typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)[id] === 'string' && typeof (v as Record<string, unknown>).node === 'string'
  return typeof o === 'object' && o !== null && typeof o.template?.name === 'string'
    // The kind decides whether teardown sends the token's exp (never a pilot enrolment credential's).
    && Array.isArray(o.tokens) && o.tokens.every((t) => entry(t, 'jti') && ['number', 'undefined'].includes(typeof (t as { exp?: unknown }).exp)
      && ['idtoken', 'pilot_enrolment'].includes((t as { kind?: unknown }).kind as string))
    && Array.isArray(o.certificates) && o.certificates.every((c) => entry(c, 'serial'))
}
