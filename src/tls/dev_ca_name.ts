import { X509Certificate } from 'node:crypto'

/**
 * The organization the development CA (dev_ca.ts) names itself with. Kept apart from dev_ca.ts, which
 * loads @peculiar/x509 (~15 MB resident), so that preflight can recognise the CA's certificates cheaply.
 */
export const DEV_CA_ORGANIZATION = 'condor-token-broker (development only)'
export const DEV_CA_NAME = `CN=condor-token-broker development CA, O=${DEV_CA_ORGANIZATION}`

/** True when the (first) certificate in `pem` was issued by a condor-token-broker development CA. */
export function isDevelopmentCertificate(pem: Buffer): boolean {
  // Node gives the issuer one attribute per line ("CN=…\nO=…").
  return new X509Certificate(pem).issuer.split('\n').includes(`O=${DEV_CA_ORGANIZATION}`)
}
