import type { LoadedTemplate } from './template/load_template.ts'
import type { ResolvedNode } from './template/resolve_template.ts'

/** The most startds one node may stand for: render asks the broker for a token and a certificate for each. */
export const MAX_STARTDS = 1000

/**
 * The hosts a Startd node stands for: its host's address with `{n}` = 1..count. Shared by render and
 * plan, so plan refuses, at the count, what render would refuse, and never asks about more hosts than
 * render could request (a count of 1e9 would otherwise be a billion policy checks).
 */
export function startdHosts(t: LoadedTemplate, n: ResolvedNode, hostAddress: string): string[] {
  const count = Number(n.properties.count ?? 1)
  const at = ['topology_template', 'node_templates', n.name, 'properties', 'count']
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_STARTDS) t.fail(at, `count must be from 1 to ${MAX_STARTDS}`)
  if (count > 1 && !hostAddress.includes('{n}')) t.fail(at, `count ${count} needs a host address with {n} (e.g. ep-{n}.example.org)`)
  return Array.from({ length: count }, (_, i) => hostAddress.replaceAll('{n}', String(i + 1)))
}

/** The host of a central manager or schedd: one name, written into COLLECTOR_HOST or the audience as it is. */
export function singleHost(t: LoadedTemplate, n: ResolvedNode, hostAddress: string): string {
  if (hostAddress.includes('{n}')) {
    t.fail(['topology_template', 'node_templates', n.name, 'requirements'], `${n.name}: {n} stands for the index of a scaled startd; the host of a ${n.type} is one name (${hostAddress})`)
  }
  return hostAddress
}

/** A daemon behind NAT reaches the pool only through the collector's CCB; render and plan both refuse one without. */
export function refuseNatWithoutCcb(t: LoadedTemplate, n: ResolvedNode, nat: boolean, ccb: boolean): void {
  if (nat && !ccb) t.fail(['topology_template', 'node_templates', n.name], `${n.name} runs on a host behind NAT, but the central manager has ccb: false`)
}
