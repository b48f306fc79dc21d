import { BrokerCallError, RefusedCertificateAnswer, type BrokerClient, type IssuedToken } from './broker_client.ts'
import { checkCluster, computeAttributes, nodeChecker } from './check_cluster.ts'
import { cloudInit } from './cloud_init.ts'
import { COLLECTOR_PORT, condorConfig, mapfile, NODE_PATHS, PilotIdentityPatternError, pilotGroupAllowEntry, type ClusterView, type NodeView } from './condor_config.ts'
import { newHostKey } from './host_key.ts'
import { pilotCredentialAsk, pilotRefusal, renderPilotGroup } from './pilot_group.ts'
import { refuseForeignTrustDomain } from './trust_domain.ts'
import { refuseDaemonUserDomains, type UserMapping } from './user_domains.ts'
import { loadTemplate, type LoadedTemplate } from './template/load_template.ts'
import { realiseTemplate, resolveInputs, type ResolvedNode } from './template/resolve_template.ts'
import { unverifiedJwtPayload } from '../../lib/jwt_payload.ts'

/** The broker role each node type's daemons authenticate as (the policy grants these to the operator). */
export const ROLE_OF = {
  'htc.nodes.CentralManager': 'central-manager',
  'htc.nodes.Schedd': 'schedd',
  'htc.nodes.Startd': 'startd',
  'htc.nodes.SlurmPilot': 'pilot',
} as const

/** An identity as an ALLOW list names it: one name@domain, no wildcard, comma, space or `$`. */
const DAEMON_IDENTITY = /^[A-Za-z0-9._+-]{1,128}@[A-Za-z0-9._:-]{1,253}$/

const TOKEN_FILE = { 'central-manager': 'NEGOTIATOR_auto_generated_token', schedd: 'SCHEDD_auto_generated_token', startd: 'STARTD_auto_generated_token' } as const

/** One file of a bundle: path relative to the bundle, content, mode. */
export interface BundleFile { path: string; content: string; mode: number; installPath?: string }
export interface Bundle { name: string; files: BundleFile[] }

export interface ManifestToken { jti: string; sub: string; role: string; node: string; host?: string; kind: 'idtoken' | 'pilot_enrolment'; exp: number }
export interface ManifestCertificate { serial: string; node: string; host: string; not_after: number }
export interface Manifest {
  template: { name: string; version: string }
  broker: string
  trust_domain: string
  created_at: number
  bundles: string[]
  tokens: ManifestToken[]
  certificates: ManifestCertificate[]
  outputs: Record<string, unknown>
}

interface Instance {
  node: string
  bundle: string
  role: 'central-manager' | 'schedd' | 'startd'
  host: string
  ip: string[]
  nat: boolean
  token: string
  identity: string
  cert?: { pem: string; key: string }
  props: Record<string, unknown>
  schedd?: NonNullable<NodeView['schedd']>
}

interface PilotGroup {
  node: string; props: Record<string, unknown>; credential: string; collector: string; trustDomain: string
  /** The collector's ALLOW entry for this group's pilots, from the broker's enrolment answer. */
  allowEntry: string
}

/** Decodes a JWT payload without verifying it: the client only reads what the broker just told it. */
function jwtClaims(token: string): Record<string, unknown> {
  return unverifiedJwtPayload(token) as Record<string, unknown>
}

/** The claims in a pilot enrolment credential (`ctbpe1.<claims>.<mac>`, docs/pilots.md). */
function enrolmentClaims(credential: string): Record<string, unknown> {
  return jwtClaims(credential)
}

export interface RenderOptions {
  templateText: string
  templateFile: string
  inputs: Record<string, unknown>
  inputsFile: string
  broker: BrokerClient
  now: number
}

/**
 * Renders every node's bundle: asks the broker for each daemon's token (and the SSL host certificate, for
 * a key made here), each pilot group's enrolment credential, then writes the HTCondor configuration
 * once every identity is known, so the ALLOW lists name exactly what was issued. Returns the bundles and
 * the manifest; writing them (atomically) is the caller's job. On failure, `issued` lists what the broker
 * already issued, so the caller can revoke it.
 */
export async function renderCluster(o: RenderOptions, issued: { tokens: ManifestToken[]; certificates: ManifestCertificate[] } = { tokens: [], certificates: [] }): Promise<{ bundles: Bundle[]; manifest: Manifest }> {
  const t = loadTemplate(o.templateText, o.templateFile)
  const inputs = resolveInputs(t, o.inputs, o.inputsFile)
  const pilotProps = await checkCluster(t, inputs, o.broker.base)
  const caPem = await o.broker.caCertificate()
  const brokerIssuer = (await o.broker.metadata()).issuer
  // Each group's enrolment first: it depends on nothing the broker issues for the daemons, and the policy's pilot
  // grant (max_count, enrolment_lifetime.max) is the bound a template most easily outgrows. Asked for after the
  // central manager, a refusal came once the daemons' tokens and certificates were issued (then revoked).
  const enrolments = new Map<string, { ask: ReturnType<typeof pilotCredentialAsk>; site: string; cred: IssuedToken; allowEntry: string }>()
  for (const [node, p] of pilotProps) {
    const ask = pilotCredentialAsk(p)
    let cred: IssuedToken & { answer: Record<string, unknown> }
    try {
      cred = await o.broker.pilotEnrolment(ROLE_OF['htc.nodes.SlurmPilot'], String(p.site), ask.count, ask.lifetime)
    } catch (err) {
      if (!(err instanceof BrokerCallError) || err.status !== 400) throw err
      t.fail(['topology_template', 'node_templates', node], pilotRefusal(node, p, err.description ?? err.message))
    }
    const c = enrolmentClaims(cred!.token)
    issued.tokens.push({ jti: String(c.jti), sub: String(c.sub), role: ROLE_OF['htc.nodes.SlurmPilot'], node, kind: 'pilot_enrolment', exp: Number(c.exp) })
    // The collector admits this enrolment's pilots alone, by the name the broker gives them (docs/provisioning.md).
    let allowEntry = ''
    try {
      allowEntry = pilotGroupAllowEntry(cred!.answer, node, { site: String(p.site), enrolment: String(c.jti) })
    } catch (err) {
      if (!(err instanceof PilotIdentityPatternError)) throw err
      t.fail(['topology_template', 'node_templates', node], err.message)
    }
    enrolments.set(node, { ask, site: String(p.site), cred: cred!, allowEntry })
  }
  const instances: Instance[] = []
  const pilots: PilotGroup[] = []
  let trustDomain = ''
  /** The central manager's node: its trust_domain is the whole cluster's. */
  let cmNode = ''
  let poolName = ''
  let collectorHost = ''
  const userDomains: string[] = []
  const schedds: Array<NonNullable<NodeView['schedd']>> = []
  const userMappings: UserMapping[] = []

  const mint = async (n: ResolvedNode, role: Instance['role'], host: string, ip: string[], nat: boolean, bundle: string, certify: boolean): Promise<Instance> => {
    const site = n.properties.site as string | undefined
    const { token } = await o.broker.daemonToken(role, host, site)
    const c = jwtClaims(token)
    issued.tokens.push({ jti: String(c.jti), sub: String(c.sub), role, node: n.name, host, kind: 'idtoken', exp: Number(c.exp) })
    // Written into every ALLOW list, which HTCondor splits at commas and spaces and where `*` is a wildcard.
    // Checked once the jti is recorded, so the caller revokes the token.
    if (typeof c.sub !== 'string' || !DAEMON_IDENTITY.test(c.sub)) {
      throw new BrokerCallError(`token for role ${role} on ${host}`, 200, 'invalid_response', 'its sub is not one HTCondor identity (name@domain)')
    }
    // (The caller revokes what was issued.)
    refuseForeignTrustDomain(t, cmNode, trustDomain, c.iss)
    let cert: Instance['cert']
    if (certify) {
      const key = await newHostKey(host)
      const got = await o.broker.certificate({ csr: key.csrPem, role, ...(site ? { site } : {}), dns: [host], ip }).catch((err: unknown) => {
        // Signed and audited before the broker answered: listed, so the caller revokes it with the rest.
        if (err instanceof RefusedCertificateAnswer && err.issuedSerial !== undefined) issued.certificates.push({ serial: err.issuedSerial, node: n.name, host, not_after: 0 })
        throw err
      })
      issued.certificates.push({ serial: got.serial, node: n.name, host, not_after: got.notAfter })
      cert = { pem: got.certificate, key: key.keyPem }
    }
    const inst: Instance = { node: n.name, bundle, role, host, ip, nat, token, identity: String(c.sub), ...(cert ? { cert } : {}), props: n.properties }
    instances.push(inst)
    return inst
  }

  // checkCluster ran these checks with stand-ins; again here, on values realised from what the broker issued.
  const check = nodeChecker(t, o.broker.base)
  const realised = await realiseTemplate(t, inputs, async (n, realisedAttrs) => {
    const hosts = check(n, realisedAttrs)
    switch (n.type) {
      case 'htc.nodes.Compute': return computeAttributes(n)
      case 'htc.nodes.CentralManager': {
        const host = hostOf(t, realisedAttrs, n, 'host')
        trustDomain = String(n.properties.trust_domain)
        cmNode = n.name
        poolName = String(n.properties.pool_name)
        collectorHost = host.address
        const inst = await mint(n, 'central-manager', host.address, host.ip, host.nat, n.name, true)
        return { collector_address: `${host.address}:${COLLECTOR_PORT}`, identity: inst.identity, issued_token_jtis: [jwtClaims(inst.token).jti] }
      }
      case 'htc.nodes.Schedd': {
        const host = hostOf(t, realisedAttrs, n, 'host')
        const m = n.properties.user_mapping as { scitokens_issuer: string; subject_domain: string; groups?: string[] } | undefined
        const inst = await mint(n, 'schedd', host.address, host.ip, host.nat, n.name, true)
        const schedd = {
          name: String(n.properties.name), audience: String(n.properties.audience ?? `condor://${host.address}:${COLLECTOR_PORT}`),
          iamIssuer: m?.scitokens_issuer ?? '', subjectDomain: m?.subject_domain ?? '', groups: m?.groups ?? [],
        }
        if (m) { userDomains.push(m.subject_domain); schedds.push(schedd); userMappings.push({ node: n.name, subjectDomain: m.subject_domain }) }
        inst.schedd = schedd
        return { name: schedd.name, identity: inst.identity, issued_token_jtis: [jwtClaims(inst.token).jti] }
      }
      case 'htc.nodes.Startd': {
        const host = hostOf(t, realisedAttrs, n, 'host')
        const made: Instance[] = []
        for (const [i, address] of hosts.entries()) {
          made.push(await mint(n, 'startd', address, host.ip, host.nat, hosts.length > 1 ? `${n.name}-${i + 1}` : n.name, true))
        }
        return { hostnames: made.map((m) => m.host), identities: made.map((m) => m.identity), issued_token_jtis: made.map((m) => jwtClaims(m.token).jti) }
      }
      case 'htc.nodes.SlurmPilot': {
        const p = n.properties
        const ask = pilotCredentialAsk(p)
        const pre = enrolments.get(n.name)
        // Realised again with the broker's values; a property that came out otherwise would leave the credential
        // asked for first describing another group (the caller revokes it).
        if (!pre || pre.site !== String(p.site) || pre.ask.count !== ask.count || pre.ask.lifetime !== ask.lifetime) {
          t.fail(['topology_template', 'node_templates', n.name], `${n.name}: its site, nodes, max_requeues, queue_estimate_s or walltime_s resolve differently once the broker's values are known`)
        }
        const cred = pre!.cred
        const c = enrolmentClaims(cred.token)
        const collector = realisedAttrs[n.requirements.collector!]!.collector_address as string
        pilots.push({ node: n.name, props: p, credential: cred.token, collector, trustDomain, allowEntry: pre!.allowEntry })
        return { site: p.site, issued_token_jtis: [c.jti], slurm_job_ids: [] }
      }
    }
  })

  const cluster: ClusterView = {
    trustDomain, poolName, collectorHost,
    cmIdentity: instances.find((i) => i.role === 'central-manager')?.identity ?? `condor@${trustDomain}`,
    scheddIdentities: instances.filter((i) => i.role === 'schedd').map((i) => i.identity),
    startdIdentities: instances.filter((i) => i.role === 'startd').map((i) => i.identity),
    pilotPatterns: [...new Set(pilots.map((p) => p.allowEntry))],
    userDomains: [...new Set(userDomains)],
  }
  // Before any configuration is written; a refusal here has the caller revoke what was issued.
  refuseDaemonUserDomains(t, userMappings, [cluster.cmIdentity, ...cluster.scheddIdentities, ...cluster.startdIdentities, ...cluster.pilotPatterns], trustDomain)

  const bundles: Bundle[] = instances.map((inst) => {
    const schedd = inst.schedd
    const view: NodeView = {
      node: inst.node, type: inst.role, host: inst.host, nat: inst.nat, hasCert: inst.cert !== undefined, tokenFile: TOKEN_FILE[inst.role],
      ...(schedd ? { schedd } : {}),
      ...(inst.role === 'startd' ? { startd: { partitionable: inst.props.partitionable === true, site: String(inst.props.site) } } : {}),
    }
    const files: BundleFile[] = [
      { path: 'condor_config.d/50-broker.conf', content: condorConfig(cluster, view, brokerIssuer), mode: 0o644, installPath: NODE_PATHS.config },
      { path: `tokens.d/${view.tokenFile}`, content: `${inst.token}\n`, mode: 0o600, installPath: `${NODE_PATHS.tokens}/${view.tokenFile}` },
      { path: 'certs/pool-ca.crt', content: caPem, mode: 0o644, installPath: NODE_PATHS.caCert },
    ]
    if (inst.cert) {
      files.push({ path: 'certs/host.crt', content: inst.cert.pem, mode: 0o644, installPath: NODE_PATHS.hostCert })
      files.push({ path: 'certs/host.key', content: inst.cert.key, mode: 0o600, installPath: NODE_PATHS.hostKey })
    }
    // Both configs name CERTIFICATE_MAPFILE. `schedds` holds only the schedds with a user_mapping.
    if (inst.role === 'schedd' || inst.role === 'central-manager') {
      const mappings = inst.role === 'central-manager' ? schedds : schedds.filter((m) => m === schedd)
      files.push({ path: 'certs/condor_mapfile', content: mapfile(mappings, brokerIssuer), mode: 0o644, installPath: NODE_PATHS.mapfile })
    }
    files.push({ path: 'user-data', content: cloudInit(files), mode: 0o600 })
    return { name: inst.bundle, files }
  })

  for (const p of pilots) {
    const props = p.props
    const script = renderPilotGroup(p.node, props, { brokerUrl: o.broker.base, collector: p.collector, trustDomain: p.trustDomain })
    bundles.push({
      name: p.node,
      files: [
        { path: 'pilot.sbatch', content: script, mode: 0o755 },
        { path: 'enrolment.cred', content: `${p.credential}\n`, mode: 0o600 },
        { path: 'pool-ca.crt', content: caPem, mode: 0o644 },
        { path: 'README', content: pilotReadme(props), mode: 0o644 },
      ],
    })
  }

  const manifest: Manifest = {
    template: { name: t.doc.metadata.template_name, version: t.doc.metadata.template_version },
    broker: o.broker.base, trust_domain: trustDomain, created_at: o.now,
    bundles: bundles.map((b) => b.name),
    tokens: issued.tokens, certificates: issued.certificates, outputs: realised.outputs,
  }
  return { bundles, manifest }
}

function hostOf(t: LoadedTemplate, attrs: Readonly<Record<string, Record<string, unknown>>>, n: ResolvedNode, kind: string): { address: string; ip: string[]; nat: boolean } {
  const a = attrs[n.requirements[kind]!]
  if (!a) t.fail(['topology_template', 'node_templates', n.name], `${kind} ${n.requirements[kind]} is not realised`)
  return { address: String(a!.hostname), ip: (a!.private_address as string[]) ?? [], nat: a!.nat === true }
}

function pilotReadme(p: Record<string, unknown>): string {
  return [
    `SLURM pilot group for site ${String(p.site)}.`,
    `1. Copy enrolment.cred to ${String(p.enrolment_file)} on the site (mode 0600, the submitting user's own);`,
    `   the broker's TLS CA to ${String(p.broker_ca_file)}.`,
    '2. sbatch pilot.sbatch. Each node redeems the credential at start for its own IDTOKEN, again if SLURM requeues the job;',
    '   the file is deleted once no later run of the job can need it.',
    'The credential is a secret until it is redeemed or expires: do not leave copies behind.',
  ].join('\n') + '\n'
}
