import type { Config } from '../config.ts'
import type { PolicyContext } from './compile.ts'

/**
 * Builds what policies need from the broker configuration. `extraVars` lets the composition root add
 * values it only knows at start-up (e.g. IAM_ISSUER of the development IAM); config `policy.vars`
 * override them, and the built-ins TRUST_DOMAIN, UID_DOMAIN and BROKER_ISSUER cannot be overridden.
 */
export function policyContextFromConfig(config: Config, extraVars: Readonly<Record<string, string>> = {}): PolicyContext {
  const uidDomain = config.policy.uid_domain ?? config.trust_domain
  return {
    trustDomain: config.trust_domain,
    uidDomain,
    vars: { ...extraVars, ...config.policy.vars, TRUST_DOMAIN: config.trust_domain, UID_DOMAIN: uidDomain, BROKER_ISSUER: config.issuer },
    scitokenProfile: config.scitoken.profile,
    maxLifetime: { idtoken: config.idtoken.max_lifetime, scitoken: config.scitoken.max_lifetime },
  }
}
