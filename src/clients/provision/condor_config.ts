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
   * pilot group by the prefix its policy fixes: `pilot-<site>-*@pilots.<trust domain>`.
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
 * The ALLOW entry that admits a pilot group at the collector. A pilot's identity names its SLURM job and is
 * minted at pilot start, so the group is admitted by a prefix; the example policy's `pilot.identity` is
 * `pilot-{site}-{slurm_job_id}@pilots.{trust_domain}`, and plan checks the policy in force against it.
 */
export function pilotAllowEntry(site: string, trustDomain: string): string {
  return `pilot-${site}-*@pilots.${trustDomain}`
}

/** Whether an ALLOW entry admits an identity: HTCondor's `*` stands for any run of characters. */
export function allowEntryAdmits(entry: string, identity: string): boolean {
  const pattern = entry.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')
  return new RegExp(`^${pattern}$`).test(identity)
}

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
