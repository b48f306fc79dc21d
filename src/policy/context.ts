import type { Config } from '../config.ts'
import type { PolicyContext } from './compile.ts'

/**
 * Builds what policies need from the broker configuration. `iamIssuer` is what `${IAM_ISSUER}` stands for
 * when the caller knows it (the first configured IAM, or the development IAM serve starts); config
 * `policy.vars` override it, and the built-ins TRUST_DOMAIN, UID_DOMAIN and BROKER_ISSUER cannot be overridden.
 */
export function policyContextFromConfig(config: Config, iamIssuer?: string): PolicyContext {
  const uidDomain = config.policy.uid_domain ?? config.trust_domain
  return {
    trustDomain: config.trust_domain,
    uidDomain,
    vars: { ...(iamIssuer !== undefined ? { IAM_ISSUER: iamIssuer } : {}), ...config.policy.vars, TRUST_DOMAIN: config.trust_domain, UID_DOMAIN: uidDomain, BROKER_ISSUER: config.issuer },
    scitokenProfile: config.scitoken.profile,
    maxLifetime: { idtoken: config.idtoken.max_lifetime, scitoken: config.scitoken.max_lifetime },
  }
}
