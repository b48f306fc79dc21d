import { PILOT_IDENTITY_FIELD, PILOT_IDENTITY_SEPARATORS } from '../../contract/pilot.ts'

/**
 * The HTCondor configuration of one node's bundle. Authentication is by IDTOKENS (daemons), SCITOKENS
 * (users, over SSL), SSL (host certificates from the pool CA) and FS (local tools); never GSI or X.509
 * proxies. Every ALLOW list names exactly the identities the broker issued for this cluster, so a token
 * minted for another pool (same key, other identity) is refused here.
 */

/** Where a bundle's files land on the node (cloud-init writes them there). */
export const NODE_PATHS = {
  config: '/etc/condor/config.d/50-broker.conf',
  tokens: '/etc/condor/tokens.d',
  hostCert: '/etc/condor/certs/host.crt',
  hostKey: '/etc/condor/certs/host.key',
  caCert: '/etc/condor/certs/pool-ca.crt',
  mapfile: '/etc/condor/certs/condor_mapfile',
} as const

export const AUTH_METHODS = 'FS, IDTOKENS, SCITOKENS, SSL'
export const COLLECTOR_PORT = 9618

/** Everything the cluster's ALLOW lists and mapfiles are built from, known once every node is realised. */
export interface ClusterView {
  trustDomain: string
  poolName: string
  collectorHost: string
  /** The central manager's identity (NEGOTIATOR, DAEMON, ADMINISTRATOR). */
  cmIdentity: string
  scheddIdentities: string[]
  startdIdentities: string[]
  /**
   * Pilot identities are minted at pilot start (they name the SLURM job), so the collector admits each
   * pilot group by the head its policy fixes (pilotAllowEntryOf): `pilot+<site>+<enrolment>+*@pilots.<trust domain>`.
   */
  pilotPatterns: string[]
  /** Users' identity domains (what SciTokens map to). */
  userDomains: string[]
}

export interface NodeView {
  node: string
  type: 'central-manager' | 'schedd' | 'startd'
  host: string
  nat: boolean
  hasCert: boolean
  /** The token file name in tokens.d (per daemon: `<SUBSYS>_auto_generated_token`). */
  tokenFile: string
  schedd?: { name: string; audience: string; iamIssuer: string; subjectDomain: string; groups: string[] }
  startd?: { partitionable: boolean; site: string }
}

/**
 * The ALLOW entry that admits one pilot group at the collector, built from what the broker says the group's
 * pilots will be called (the enrolment answer's `pilot_identity`: the policy's pilot.identity with site and
 * enrolment filled in, `{slurm_job_id}` and `{node}` left). A pilot's job and node are known only when it starts,
 * so they become HTCondor's one `*`. The policy puts site and enrolment before them, each ended by a character
 * neither holds, so the entry admits this enrolment's pilots only: not another cluster's at the site, nor a site
 * whose label this one's begins. Throws PilotIdentityPatternError, one line naming the group, for anything else.
 */
export function pilotAllowEntryOf(pattern: string, group: string): string {
  const perPilot = /\{(slurm_job_id|node)\}/g
  const spots = [...pattern.matchAll(perPilot)]
  const head = spots.length ? pattern.slice(0, spots[0]!.index) : ''
  const tail = spots.length ? pattern.slice(spots.at(-1)!.index + spots.at(-1)![0].length) : ''
  const sep = head.at(-1)
  if (spots.length === 0 || /[{}*,\s/"\\$]/.test(head + tail) || !(head + tail).includes('@') || sep === undefined || !PILOT_FIELD_END.includes(sep)) {
    throw new PilotIdentityPatternError(`${group}: the broker names this group's pilots ${JSON.stringify(pattern.slice(0, 200))}, which no ALLOW entry can admit alone: its pilot.identity must put {site} and {enrolment} before {slurm_job_id} and {node}, each followed by one of ${PILOT_FIELD_END.split('').join(' ')} (the broker's default does)`)
  }
  return `${head}*${tail}`
}

/**
 * The same, from a broker's enrolment answer; an answer that does not say (an older broker) is refused. Defence in
 * depth: the answer is taken only when the entry's fixed head names the group's site and the credential's jti (the
 * same answer's token), each ended by a field end, as the broker's policy load requires. An answer naming another
 * site or enrolment (a broker bug, a policy reloaded between two answers, a proxy mixing answers up) would have the
 * collector admit someone else's pilots and refuse this group's. What precedes a field is the policy's literal text,
 * which may end in any character, so a site label ending in this one's is not told apart; the enrolment, 32 hex
 * characters no other credential shares, is.
 */
export function pilotGroupAllowEntry(answer: Record<string, unknown>, group: string, expected: { site: string; enrolment: string }): string {
  const pattern = answer[PILOT_IDENTITY_FIELD]
  if (typeof pattern !== 'string') {
    throw new PilotIdentityPatternError(`${group}: the broker's enrolment answer does not say what its pilots will be called (${PILOT_IDENTITY_FIELD}), so no ALLOW entry can admit them alone: upgrade the broker`)
  }
  const entry = pilotAllowEntryOf(pattern, group)
  const head = entry.slice(0, entry.indexOf('*'))
  const names = (value: string) => [...PILOT_FIELD_END].some((end) => head.includes(`${value}${end}`))
  if (!names(expected.site) || !names(expected.enrolment)) {
    throw new PilotIdentityPatternError(`${group}: the broker names this group's pilots ${JSON.stringify(pattern.slice(0, 200))}, which does not name site ${expected.site} and enrolment ${expected.enrolment} (the credential it just issued) before the job and node: refusing to admit them`)
  }
  return entry
}

export class PilotIdentityPatternError extends Error {}

/** What may end the site and enrolment fields of a pilot identity (the broker's PILOT_IDENTITY_SEPARATORS). */
const PILOT_FIELD_END = PILOT_IDENTITY_SEPARATORS

function list(values: Iterable<string>): string {
  return [...new Set(values)].join(', ')
}

/** `50-broker.conf` for one node. */
export function condorConfig(cluster: ClusterView, n: NodeView, brokerIssuer: string): string {
  const users = cluster.userDomains.map((d) => `*@${d}`)
  const daemons = [cluster.cmIdentity, ...cluster.scheddIdentities, ...cluster.startdIdentities, ...cluster.pilotPatterns]
  const lines: string[] = [
    `# Written by condor-token-broker provision for node ${n.node} (${n.type}). Regenerate, do not edit.`,
    `use role:${n.type === 'central-manager' ? 'centralmanager' : n.type === 'schedd' ? 'submit' : 'execute'}`,
    `TRUST_DOMAIN = ${cluster.trustDomain}`,
    `CONDOR_HOST = ${cluster.collectorHost}`,
    `COLLECTOR_HOST = ${cluster.collectorHost}:${COLLECTOR_PORT}`,
    'USE_SHARED_PORT = True',
    '',
    '# Authentication: tokens and pool-CA host certificates only.',
    'SEC_DEFAULT_AUTHENTICATION = REQUIRED',
    `SEC_DEFAULT_AUTHENTICATION_METHODS = ${AUTH_METHODS}`,
    `SEC_CLIENT_AUTHENTICATION_METHODS = ${AUTH_METHODS}`,
    `SEC_READ_AUTHENTICATION_METHODS = ${AUTH_METHODS}`,
    `SEC_WRITE_AUTHENTICATION_METHODS = ${AUTH_METHODS}`,
    'SEC_DEFAULT_ENCRYPTION = REQUIRED',
    'SEC_DEFAULT_INTEGRITY = REQUIRED',
    `SEC_TOKEN_DIRECTORY = ${NODE_PATHS.tokens}`,
    `SEC_TOKEN_SYSTEM_DIRECTORY = ${NODE_PATHS.tokens}`,
    `AUTH_SSL_CLIENT_CAFILE = ${NODE_PATHS.caCert}`,
    `AUTH_SSL_SERVER_CAFILE = ${NODE_PATHS.caCert}`,
  ]
  if (n.hasCert) {
    lines.push(
      `AUTH_SSL_SERVER_CERTFILE = ${NODE_PATHS.hostCert}`,
      `AUTH_SSL_SERVER_KEYFILE = ${NODE_PATHS.hostKey}`,
      `AUTH_SSL_CLIENT_CERTFILE = ${NODE_PATHS.hostCert}`,
      `AUTH_SSL_CLIENT_KEYFILE = ${NODE_PATHS.hostKey}`,
    )
  }
  if (n.nat) lines.push('', '# Behind NAT: reached through the collector\'s CCB.', 'CCB_ADDRESS = $(COLLECTOR_HOST)')
  lines.push('', '# Authorization: exactly the identities the broker issued for this cluster.')
  lines.push(`ALLOW_DAEMON = ${cluster.cmIdentity}`, `ALLOW_ADMINISTRATOR = ${cluster.cmIdentity}`, `ALLOW_NEGOTIATOR = ${cluster.cmIdentity}`)
  switch (n.type) {
    case 'central-manager':
      lines.push(
        `COLLECTOR_NAME = ${cluster.poolName}`,
        `ALLOW_READ = ${list([...daemons, ...users])}`,
        `ALLOW_WRITE = ${list(daemons)}`,
        `ALLOW_ADVERTISE_MASTER = ${list(daemons)}`,
        `ALLOW_ADVERTISE_SCHEDD = ${list(cluster.scheddIdentities)}`,
        `ALLOW_ADVERTISE_STARTD = ${list([...cluster.startdIdentities, ...cluster.pilotPatterns])}`,
        `CERTIFICATE_MAPFILE = ${NODE_PATHS.mapfile}`,
        '# The pool signing key (signing_key_ref) goes into SEC_PASSWORD_DIRECTORY out of band; bundles never carry it.',
      )
      break
    case 'schedd':
      lines.push(
        `SCHEDD_NAME = ${n.schedd!.name}`,
        `ALLOW_READ = ${list([...daemons, ...users])}`,
        `ALLOW_WRITE = ${list([cluster.cmIdentity, ...users])}`,
        `CERTIFICATE_MAPFILE = ${NODE_PATHS.mapfile}`,
        `SCITOKENS_SERVER_AUDIENCE = ${n.schedd!.audience}`,
      )
      break
    case 'startd':
      lines.push(
        `ALLOW_READ = ${list(daemons)}`,
        `ALLOW_WRITE = ${list([cluster.cmIdentity, ...cluster.scheddIdentities])}`,
        `STARTD_ATTRS = $(STARTD_ATTRS) PilotSite`,
        `PilotSite = "${n.startd!.site}"`,
      )
      if (n.startd!.partitionable) lines.push('use feature:PartitionableSlot')
      break
  }
  lines.push(`# SciTokens from the broker itself are accepted too: ${brokerIssuer}`)
  return lines.join('\n') + '\n'
}

/** PCRE-escapes an issuer for a mapfile key (`/` as `\/`). */
function escapeIssuer(iss: string): string {
  return iss.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\//g, '\\/')
}

/**
 * CERTIFICATE_MAPFILE lines: SciTokens of each mapped IAM issuer map `<iss>,<sub>` to `<sub>@<subject domain>`;
 * SciTokens the broker minted already carry the user's identity as `sub`. Group membership is enforced
 * by the broker's policy when it mints, not here: HTCondor's mapfile matches issuer and subject only.
 * A schedd passes its own mapping (none without user_mapping); the central manager, whose ALLOW_READ admits
 * every schedd's users, passes them all. The broker's rule is always there, as every config names the file.
 */
export function mapfile(mappings: ReadonlyArray<NonNullable<NodeView['schedd']>>, brokerIssuer: string): string {
  return [
    ...mappings.flatMap((m) => [
      `# IAM ${m.iamIssuer}${m.groups.length ? ` (groups ${m.groups.join(', ')} are checked by the broker's policy)` : ''}`,
      `SCITOKENS /^${escapeIssuer(m.iamIssuer)},(.*)$/ \\1@${m.subjectDomain}`,
    ]),
    `SCITOKENS /^${escapeIssuer(brokerIssuer)},(.*)$/ \\1`,
  ].join('\n') + '\n'
}
