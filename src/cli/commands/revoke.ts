import { userInfo } from 'node:os'
import { loadConfig, maxTokenLifetime, type Config } from '../../config.ts'
import { systemClock } from '../../lib/clock.ts'
import { createLogger } from '../../lib/logger.ts'
import { condorConfigSnippet } from '../../revocation/condor_expression.ts'
import { assertRevocationsMatchAudit } from '../../revocation/revocation_consistency.ts'
import { RevocationService } from '../../revocation/revocation_service.ts'
import { REVOCATION_ID, REVOCATION_KINDS, type RevocationKind } from '../../revocation/revocation.ts'
import { policyContextFromConfig } from '../../policy/context.ts'
import { formatIssue, loadPolicyDir } from '../../policy/load.ts'
import { revocationLabels, type RevocationLabels } from '../../policy/revocation_labels.ts'
import { primaryIamIssuer } from '../../services.ts'
import { writeCondorConfigAtomic } from '../../revocation/write_condor_config.ts'
import { assertDataDirOwner } from '../data_dir_owner.ts'
import { cliStoreOptions, openBrokerStore, tryAuditMacKey } from '../../storage/open_store.ts'
import { CliError, parse, positiveInt, type CommandIo, type Options } from '../command.ts'
import { quoted, shown } from '../shown_column.ts'

const HELP = `Usage: condor-token-broker revoke (--jti ID | --sub SUB | --role ROLE | --site SITE | --client ID | --pilot-job SITE:JOBID | --pilot-enrolment JTI) [--iss ISSUER] [--reason TEXT] [--exp EPOCH] [--dry-run]
       condor-token-broker revoke lift ID [--reason TEXT]
       condor-token-broker revoke list [--all] [--json]
       condor-token-broker revoke condor [--out FILE]

  revoke --jti ID        one token (until its exp, from the audit log or --exp)
  revoke --sub SUB       every token issued so far to this identity (e.g. a compromised pilot host), and
                         no new token to it, nor to an IAM caller with this sub, while the entry lasts
  revoke --role ROLE     every token of this role issued so far: bumps the role's generation (ctb_gen);
                         new tokens of the role are still issued
  revoke --site SITE     every token issued so far for this site (ctb_site); new ones are still issued
  revoke --client ID     no new token to the IAM client ID (and no admin calls) while the entry lasts;
                         tokens already issued to it stay valid (revoke those by --sub, --role or --site)
  revoke --pilot-job SITE:JOBID
                         every pilot token of one SLURM job at one site (ctb_site, ctb_slurm_job), and
                         its renewal; the job id is unique within one SLURM cluster only, so this also
                         hits another cluster's pilots at SITE with that job id
  revoke --pilot-enrolment JTI
                         every pilot token of one enrolment (ctb_enrolment: the credential's jti, as
                         provision's manifest lists it), its redemptions and its pilots' renewals: one
                         cluster's pilot group (what provision teardown revokes)
  --iss ISSUER           with --sub or --client: only that caller or client at this trusted IAM issuer
                         (then --sub is a caller ban, like --client); without it, at every trusted issuer
  --exp EPOCH            with --jti only (refused with any other kind): the token's exp, at most now plus
                         the longest token lifetime (or the latest exp the broker has issued, if later),
                         and not more than 60 s past (clock skew allowed) unless the audit log records
                         a later exp the token still lives to (then that one holds the entry)
  --dry-run              say how many live tokens the revocation would match; write nothing
  ROLE and SITE must be ones the policies define (or that tokens were issued for).
  revoke lift ID         lift entry ID (from revoke list) before its end: it stops matching and blocking;
                         audited as token.unrevoked. A role revocation cannot be lifted.
  revoke list            active revocations (--all: also lifted ones and those that can no longer match)
  revoke condor          print SEC_TOKEN_REVOCATION_EXPR as a config snippet; --out writes it atomically
                         into an existing directory (e.g. /etc/condor/config.d/90-token-revocations.conf),
                         then run condor_reconfig. Refuses (exit 1, nothing written) when the revocations
                         table differs from the audit chain, as serve refuses to start

Each subcommand takes only the options shown on its line (and --config); any other is refused.
A running broker picks up CLI revocations within revocation.refresh_seconds.
Common options: --config FILE (or CTB_CONFIG)`

/** The options each subcommand takes (`add`: revoke itself). lift keeps --dry-run to refuse it with its own words. */
const SUBCOMMAND_OPTIONS = {
  add: {
    config: { type: 'string' }, jti: { type: 'string' }, sub: { type: 'string' }, role: { type: 'string' }, site: { type: 'string' },
    client: { type: 'string' }, 'pilot-job': { type: 'string' }, 'pilot-enrolment': { type: 'string' }, iss: { type: 'string' }, 'dry-run': { type: 'boolean' },
    reason: { type: 'string' }, exp: { type: 'string' },
  },
  lift: { config: { type: 'string' }, reason: { type: 'string' }, 'dry-run': { type: 'boolean' } },
  list: { config: { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' } },
  condor: { config: { type: 'string' }, out: { type: 'string' } },
} as const satisfies Record<string, Options>
type AnyOptions = typeof SUBCOMMAND_OPTIONS.add & typeof SUBCOMMAND_OPTIONS.lift & typeof SUBCOMMAND_OPTIONS.list & typeof SUBCOMMAND_OPTIONS.condor

export async function revokeCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') { io.out(HELP); return argv.length ? 0 : 2 }
  const sub = argv[0] === 'list' || argv[0] === 'condor' || argv[0] === 'lift' ? argv[0] : 'add'
  // Each subcommand parses only its own options, so another's is refused as unknown, as by every command: with
  // one table for all, `revoke list --jti X` listed everything and `revoke lift 1 --all` lifted.
  // Read through the union of the tables: an option another subcommand takes is absent here.
  const { values, positionals } = parse(sub === 'add' ? argv : argv.slice(1), SUBCOMMAND_OPTIONS[sub], true) as ReturnType<typeof parse<AnyOptions>>
  if (values.help) { io.out(HELP); return 0 }
  if (sub === 'lift' && (positionals.length !== 1 || !REVOCATION_ID.test(positionals[0]!))) throw new CliError('revoke lift takes one revocation id (see revoke list)', 2)
  if (sub !== 'lift' && positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}" (see revoke --help)`, 2)
  // A lift has no dry run: taken as one, the flag was ignored and the revocation lifted for real (and, on a
  // host without the audit MAC key, recorded without a MAC, as the store was opened for reading).
  if (sub === 'lift' && values['dry-run'] === true) throw new CliError('revoke lift has no --dry-run (see revoke list for what it would lift)', 2)
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  // list and condor only read: a host without the audit MAC key may run them; the others write records.
  const readOnly = sub === 'list' || sub === 'condor' || (sub === 'add' && values['dry-run'] === true)
  if (!readOnly) assertDataDirOwner(config.data_dir, sub === 'lift' ? 'revoke lift' : 'revoke')
  const mac = readOnly ? tryAuditMacKey(config) : undefined
  const store = await openBrokerStore(config, cliStoreOptions(mac))
  const service = new RevocationService({
    store, clock: systemClock, log: createLogger((l) => io.err(l.trimEnd())), maxTokenLifetime: maxTokenLifetime(config), refreshSeconds: config.revocation.refresh_seconds,
    knownLabels: () => policyLabels(config),
    knownIssuers: () => trustedIssuers(config),
  })
  try {
    if (sub === 'list') {
      const rows = await service.list({ all: values.all === true })
      // An empty answer reads as "did nothing" (say, right after a lift); JSON stays empty for scripts.
      if (rows.length === 0 && !values.json) {
        io.out(values.all === true ? 'no revocations' : 'no active revocations (--all also lists lifted ones and those that can no longer match)')
      }
      for (const r of rows) {
        io.out(values.json ? JSON.stringify(r) : `${String(r.id).padStart(5)}  ${shown(r.kind).padEnd(4)}  ${shown(r.value)}  revoked ${iso(r.revokedAt)}  until ${iso(r.until)}${r.gen !== undefined ? `  gen ${r.gen}` : ''}${r.reason ? `  reason ${quoted(r.reason)}` : ''}${r.iss ? `  iss ${shown(r.iss)}` : ''}${r.revokedBy ? `  by ${shown(r.revokedBy)}` : ''}${r.liftedAt !== undefined ? `  lifted ${iso(r.liftedAt)}${r.liftedBy ? ` by ${shown(r.liftedBy)}` : ''}` : ''}`)
      }
      return 0
    }
    if (sub === 'lift') {
      const rev = await service.lift(Number(positionals[0]), values.reason ? { reason: values.reason } : {}, { principal: `cli:${userInfo().username}` })
      io.out(`lifted revocation ${rev.id} (${rev.kind} ${rev.value})`)
      if (rev.kind !== 'client') io.out('push the new expression to the daemons: condor-token-broker revoke condor --out <config.d file>, then condor_reconfig')
      return 0
    }
    if (sub === 'condor') {
      // The expression decides what every daemon accepts, and this process holds nothing of what the table
      // said before (as a running broker does): a row deleted or marked lifted by hand would un-revoke on every
      // daemon at the next condor_reconfig. So the table must match the chain first, as at serve's start; the
      // whole chain is hashed (no anchor: the CLI seals none), about 1 s per 100,000 records.
      await assertRevocationsMatchAudit(store)
      const { expr, clauses, unexpressed, generatedAt } = await service.condorExpression()
      const text = condorConfigSnippet(expr, clauses, generatedAt, unexpressed)
      if (values.out) {
        try {
          writeCondorConfigAtomic(values.out, text)
        } catch (err) {
          throw new CliError(`cannot write --out ${values.out}: ${outProblem(err)}`)
        }
        io.out(`wrote ${values.out} (${clauses} clauses); run condor_reconfig on the daemons that read it`)
      } else io.out(text.trimEnd())
      return 0
    }
    const kinds = REVOCATION_KINDS.filter((k) => values[k] !== undefined)
    if (kinds.length !== 1) throw new CliError('give exactly one of --jti, --sub, --role, --site, --client, --pilot-job, --pilot-enrolment (see revoke --help)', 2)
    const kind: RevocationKind = kinds[0]!
    const exp = positiveInt('exp', values.exp)
    const req = { kind, value: values[kind]!, ...(values.reason ? { reason: values.reason } : {}), ...(exp !== undefined ? { exp } : {}), ...(values.iss !== undefined ? { iss: values.iss } : {}) }
    if (values['dry-run']) {
      await service.refresh()
      const { liveTokens } = await service.preview(req)
      const n = `${liveTokens} live token${liveTokens === 1 ? '' : 's'}`
      io.out(kind === 'client' || req.iss !== undefined
        ? `dry run: would block new tokens for ${kind === 'client' ? 'client' : 'caller'} ${req.value}${where(req.iss)}; ${n} issued to it would stay valid; nothing written`
        : `dry run: would revoke ${n} (${kind} ${req.value})${kind === 'sub' ? ' and block new tokens to it' : ''}; nothing written`)
      return 0
    }
    const rev = await service.revoke(req, { principal: `cli:${userInfo().username}` })
    io.out(`revoked ${rev.kind} ${rev.value}${rev.kind === 'sub' || rev.kind === 'client' ? where(rev.iss) : ''} (id ${rev.id}${rev.gen !== undefined ? `, ${rev.value} tokens now carry ctb_gen ${rev.gen}` : ''}); listed until ${iso(rev.until)}`)
    io.out('push the new expression to the daemons: condor-token-broker revoke condor --out <config.d file>, then condor_reconfig')
    return 0
  } finally {
    await store.close()
  }
}

/** Why the snippet could not be written, in words an operator can act on (a path is the operator's input). */
function outProblem(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EISDIR': return 'it is a directory; name a file in it'
    case 'ENOTDIR': case 'EEXIST': return 'a part of its path is not a directory'
    case 'EACCES': case 'EPERM': return 'permission denied'
    case 'EROFS': return 'read-only file system'
    case 'ENOENT': return 'no such directory (create it, or name one LOCAL_CONFIG_DIR lists: condor_config_val LOCAL_CONFIG_DIR)'
    default: return (err as Error).message?.split('\n')[0] ?? String(err)
  }
}

/** Caller revocations name an issuer, or match at every trusted one: say which. */
function where(iss: string | undefined): string {
  return iss !== undefined ? ` at ${iss}` : ' at every trusted issuer'
}

function iso(t: number): string {
  return new Date(t * 1000).toISOString().replace('.000Z', 'Z')
}

/** The IAM issuers `serve` would trust: the configured ones, or the development IAM when it has a fixed port. */
function trustedIssuers(config: Config): Set<string> {
  const dev = config.iam.issuers.length === 0 ? primaryIamIssuer(config) : undefined
  return new Set([...config.iam.issuers.map((i) => i.issuer), ...(dev !== undefined ? [dev] : [])])
}

/** Roles and sites of the policies `serve` would load, resolved the way `policy check` resolves them. */
function policyLabels(config: Config): RevocationLabels {
  const r = loadPolicyDir(config.policy_dir, policyContextFromConfig(config, primaryIamIssuer(config)))
  if (!r.ok) throw new CliError(`cannot check the name against the policies: ${formatIssue(r.issues[0]!)} (see policy check)`, 1)
  return revocationLabels(r.policy)
}
