import { checkConfigValues } from './config_values.ts'
import { refuseNatWithoutCcb, singleHost, startdHosts } from './node_hosts.ts'
import { checkPilotGroup } from './pilot_group.ts'
import type { LoadedTemplate } from './template/load_template.ts'
import { realiseTemplate, type Attributes, type ResolvedNode } from './template/resolve_template.ts'

/** A Compute node's attributes: the same whether the broker is asked or not. */
export function computeAttributes(n: ResolvedNode): Attributes {
  const address = String(n.properties.address)
  return { hostname: address, public_address: [address], private_address: (n.properties.ip_addresses as string[] | undefined) ?? [], nat: n.properties.nat === true }
}

// What the broker would supply (identities, jtis), as plain words that pass every check a real one passes.
const STAND_IN_IDENTITY = 'stand-in@pool.invalid'
export const STAND_IN_JTI = 'stand-in'

/**
 * The checks render makes of a node before asking the broker anything for it, kept in one place so that
 * plan, walking the template with the broker's answers, refuses exactly what checkCluster refuses. The
 * returned function is called for each node in realisation order (it follows the central manager's ccb)
 * and gives the hosts the node stands for: one for a central manager or schedd, one per startd, none else.
 */
export function nodeChecker(t: LoadedTemplate, brokerUrl: string): (n: ResolvedNode, attrs: Readonly<Record<string, Attributes>>) => string[] {
  let ccb = true
  /**
   * Host (lower case and without a trailing dot, as DNS compares it) → the daemon node whose bundle installs there. Every daemon bundle
   * writes the same /etc/condor paths, so a second one on a host would overwrite the first's configuration and
   * host key, leaving minted credentials for a role the host never runs.
   */
  const bundleHosts = new Map<string, string>()
  // A trailing dot is the absolute form of the same name (RFC 1034 §3.1), which the address check lets through.
  const hostKey = (h: string) => h.toLowerCase().replace(/\.$/, '')
  const claim = (n: ResolvedNode, hosts: string[]): string[] => {
    for (const h of hosts) {
      const other = bundleHosts.get(hostKey(h))
      if (other !== undefined) {
        t.fail(['topology_template', 'node_templates', n.name, 'requirements'],
          `${n.name}: its host ${h} is also the host of ${other}; every daemon bundle installs to the same /etc/condor paths, so give each daemon node a host of its own`)
      }
      bundleHosts.set(hostKey(h), n.name)
    }
    return hosts
  }
  return (n, attrs) => {
    checkConfigValues(t, n)
    if (n.type === 'htc.nodes.CentralManager') ccb = n.properties.ccb !== false
    const host = n.requirements.host ? attrs[n.requirements.host]! : undefined
    if (host) refuseNatWithoutCcb(t, n, host.nat === true, ccb)
    switch (n.type) {
      case 'htc.nodes.CentralManager': case 'htc.nodes.Schedd': return claim(n, [singleHost(t, n, String(host!.hostname))])
      case 'htc.nodes.Startd': {
        const hosts = startdHosts(t, n, String(host!.hostname))
        // Each host's certificate would name the whole list: any execute point's key good for its neighbours' addresses.
        const ips = host!.private_address as string[] | undefined
        if (hosts.length > 1 && ips !== undefined && ips.length > 0) {
          t.fail(['topology_template', 'node_templates', n.name, 'properties', 'count'],
            `${n.name}: count ${hosts.length} stands for ${hosts.length} hosts, but ${n.requirements.host} has one ip_addresses list, and which address is whose is not said (each host certificate would name them all): drop ip_addresses or give each host a Compute node`)
        }
        return claim(n, hosts)
      }
      case 'htc.nodes.SlurmPilot': checkPilotGroup(t, n, brokerUrl); return []
      default: return []
    }
  }
}

/**
 * Realises the whole template without the broker, with stand-ins for what only the broker knows, and
 * runs every check render makes of a node. Render calls it first, so a value refused in a node realised
 * late (a startd's site, a pilot's command) is refused before anything is issued for the nodes before it,
 * rather than after, with those tokens and certificates to revoke again.
 */
export async function checkCluster(t: LoadedTemplate, inputs: Record<string, unknown>, brokerUrl: string): Promise<Map<string, Record<string, unknown>>> {
  const check = nodeChecker(t, brokerUrl)
  /** Each SLURM pilot group's resolved properties: render asks for their enrolments before anything else. */
  const pilots = new Map<string, Record<string, unknown>>()
  await realiseTemplate(t, inputs, async (n, attrs) => {
    const hosts = check(n, attrs)
    switch (n.type) {
      case 'htc.nodes.Compute': return computeAttributes(n)
      case 'htc.nodes.CentralManager':
        return { collector_address: `${hosts[0]}:9618`, identity: STAND_IN_IDENTITY, issued_token_jtis: [STAND_IN_JTI] }
      case 'htc.nodes.Schedd':
        return { name: n.properties.name, identity: STAND_IN_IDENTITY, issued_token_jtis: [STAND_IN_JTI] }
      case 'htc.nodes.Startd':
        return { hostnames: hosts, identities: hosts.map(() => STAND_IN_IDENTITY), issued_token_jtis: hosts.map(() => STAND_IN_JTI) }
      case 'htc.nodes.SlurmPilot':
        pilots.set(n.name, n.properties)
        return { site: n.properties.site, issued_token_jtis: [STAND_IN_JTI], slurm_job_ids: [] }
    }
  })
  return pilots
}
