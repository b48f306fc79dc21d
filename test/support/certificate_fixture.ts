import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as x509 from '@peculiar/x509'
import { CertificateService } from '../../src/ca/certificate_service.ts'
import { initPoolCa, PoolCa } from '../../src/ca/pool_ca.ts'
import type { VerifiedSubject } from '../../src/iam/subject.ts'
import { fixedClock, type Clock } from '../../src/lib/clock.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import type { RequestLimits } from '../../src/ratelimit/request_limits.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { TEST_NOW } from './broker_deps.ts'
import { tempDir } from './tmp.ts'

/** The IAM and the provisioning robot of the HTTP certificate tests. */
export const CERT_ISS = 'https://iam.example.org/'
export const CERT_OPERATOR: VerifiedSubject = { iss: CERT_ISS, sub: 'provisioner', client_id: 'provisioner', groups: [], scopes: [], exp: TEST_NOW + 3600, claims: {} }

/** A fresh P-256 certificate request, PEM. */
export async function csr(): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  return (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=x', keys: keys as never, signingAlgorithm: alg })).toString('pem')
}

/**
 * A pool CA and a certificate service under one rule: the provisioning robot may have schedd certificates
 * (and IDTOKENs) for ap*.example.org, for a day, on the given sites if any.
 */
export async function certificateSite(options: { sites?: string[]; clock?: Clock; limits?: RequestLimits } = {}) {
  const root = tempDir()
  writeFileSync(join(root, 'p.yaml'), `version: 1
rules:
  - id: ops
    match: { issuer: ${CERT_ISS}, client_id: [provisioner] }
    grants:
      - role: schedd
        identity: schedd-{host_short}@aps.{trust_domain}
        token_kinds: [idtoken]
        authz: [ADVERTISE_SCHEDD, ADVERTISE_MASTER, READ]
        hosts: ["ap*.example.org"]
        lifetime: { default: 1d, max: 7d }
        certificate: { max_lifetime: 1d }
${options.sites ? `        sites: [${options.sites.join(', ')}]\n` : ''}`)
  await initPoolCa(join(root, 'ca'), { name: 'test CA', now: TEST_NOW })
  const store = new MemoryStore()
  const clock = options.clock ?? fixedClock(TEST_NOW)
  const policy = { current: loadPolicies(root, { trustDomain: 'pool.example.org', uidDomain: 'u.example.org', vars: { IAM_ISSUER: CERT_ISS }, scitokenProfile: 'wlcg', maxLifetime: {} }) }
  const service = new CertificateService({
    ca: await PoolCa.load(join(root, 'ca')), audit: store, policy, clock, maxLifetime: 86400, crlLifetime: 3600,
    ...(options.limits ? { limits: options.limits } : {}),
  })
  return { store, clock, service }
}
