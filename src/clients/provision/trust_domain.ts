import type { LoadedTemplate } from './template/load_template.ts'

/**
 * Refuses a central manager whose trust_domain is not the broker's. docs/htcondor-tokens.md §2.1: a client
 * presents only a token whose iss is the server's TRUST_DOMAIN and silently skips any other, so bundles naming
 * another trust domain than the broker signs would make a pool whose daemons never authenticate. Render learns
 * the broker's from its first token's iss; plan from policy explain (an IDTOKEN's only target is the trust domain).
 */
export function refuseForeignTrustDomain(t: LoadedTemplate, cmNode: string, trustDomain: string, brokerTrustDomain: unknown): void {
  if (brokerTrustDomain === trustDomain) return
  t.fail(['topology_template', 'node_templates', cmNode, 'properties', 'trust_domain'],
    `${cmNode}.trust_domain (${JSON.stringify(trustDomain)}) is not the broker's trust domain: its tokens carry iss ${JSON.stringify(brokerTrustDomain)}`)
}
