// @peculiar/x509 2.x resolves its ASN.1 services through tsyringe, which needs a Reflect polyfill loaded first.
import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const

/**
 * A host key pair made here, on the provisioning side: only the CSR (public key + proof of possession)
 * goes to the broker; the private key goes into the node's bundle and nowhere else.
 */
export async function newHostKey(host: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [host] }], keys: keys as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'], signingAlgorithm: ALG })
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)
  return { keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n', csrPem: csr.toString('pem') }
}
