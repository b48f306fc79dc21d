import { loadConfig, maxTokenLifetime } from '../../config.ts'
import { listLivePilots } from '../../issuance/pilot_list.ts'
import { longestLifetime } from '../../revocation/revocation.ts'
import { systemClock } from '../../lib/clock.ts'
import { cliStoreOptions, openBrokerStore, tryAuditMacKey } from '../../storage/open_store.ts'
import { CliError, parse, type CommandIo } from '../command.ts'

export const PILOT_LIST_HELP = `Usage: condor-token-broker pilot list [--site SITE] [--json]

  pilot list     live SLURM pilots (an unexpired pilot token) by site, job and node, with their
                 enrolment, redemption, last renewal and token expiry, from the audit log
  --json         one JSON object per line (with the pilot's enrolment: its cluster's pilot group)
Revoke one cluster's pilot group with: condor-token-broker revoke --pilot-enrolment JTI
Revoke one job's pilots with: condor-token-broker revoke --pilot-job SITE:JOBID (a job id is unique
within one SLURM cluster only: it also revokes another cluster's job of that id at SITE)
Common options: --config FILE (or CTB_CONFIG)`

/** `pilot list`: the live pilots the audit log knows, by site, job and node. */
export async function pilotListCommand(rest: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parse(rest, { config: { type: 'string' }, site: { type: 'string' }, json: { type: 'boolean' } }, true)
  if (values.help) { io.out(PILOT_LIST_HELP); return 0 }
  if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}" (see pilot --help)`, 2)
  if (values.site !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(values.site)) throw new CliError('--site must be a site label', 2)
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  // Only reads: a host without the audit MAC key may list.
  const mac = tryAuditMacKey(config)
  const store = await openBrokerStore(config, cliStoreOptions(mac))
  try {
    const now = systemClock.now()
    const pilots = await listLivePilots(store, now, await longestLifetime(store, 'token', maxTokenLifetime(config)), values.site !== undefined ? { site: values.site } : {})
    if (values.json) { for (const p of pilots) io.out(JSON.stringify(p)); return 0 }
    if (pilots.length === 0) { io.out('no live pilots'); return 0 }
    // The enrolment tells two clusters' pilots apart when their jobs share an id, and is what --pilot-enrolment takes.
    io.out(['SITE', 'JOB', 'NODE', 'ENROLMENT', 'REDEEMED', 'LAST RENEWAL', 'EXPIRES', 'JOB END'].join('\t'))
    for (const p of pilots) {
      io.out([p.site, p.job, p.node, p.enrolment, iso(p.redeemedAt), p.lastRenewedAt !== undefined ? `${iso(p.lastRenewedAt)} (${p.renewals})` : '-', iso(p.exp), iso(p.jobEnd)].join('\t'))
    }
    return 0
  } finally {
    await store.close()
  }
}

function iso(t: number): string {
  return new Date(t * 1000).toISOString().replace('.000Z', 'Z')
}
