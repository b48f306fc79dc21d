import type { Config } from './config.ts'

/**
 * Production means the broker has a public issuer: one that verifiers on other hosts can reach. A
 * loopback issuer (https://localhost…, https://127.x…) can only serve this host, so it is development,
 * whatever the TLS mode. Production gets no development IAM and no development issuers.
 */
export function isProduction(config: Config): boolean {
  const host = new URL(config.issuer).hostname
  return !(host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host))
}
