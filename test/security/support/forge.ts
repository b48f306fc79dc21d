/**
 * Hand-built JWTs: header and payload as exact JSON text (so duplicate members and odd types survive),
 * signed with whatever key an attacker might hold, or with IAM's real key to test claim checks.
 */
import { createHmac, KeyObject, randomUUID, sign } from 'node:crypto'
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
// @peculiar/x509 needs the Reflect polyfill loaded first; src/ no longer loads it for us at start-up.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'

export const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url')

/** Signs `b64(header).b64(payload)` with RS256/ES256 (real or attacker key) or HS* (a shared secret). */
export function signRaw(headerJson: string, payloadJson: string, key: { alg: 'RS256' | 'ES256'; privateKey: CryptoKey } | { alg: 'HS256' | 'HS384' | 'HS512'; secret: string | Buffer } | { alg: 'none' }): string {
  const input = `${b64(headerJson)}.${b64(payloadJson)}`
  if (key.alg === 'none') return `${input}.`
  if (key.alg.startsWith('HS')) {
    const k = key as { alg: string; secret: string | Buffer }
    return `${input}.${createHmac(`sha${k.alg.slice(2)}`, k.secret).update(input).digest('base64url')}`
  }
  const k = key as { alg: 'RS256' | 'ES256'; privateKey: CryptoKey }
  const keyObject = KeyObject.from(k.privateKey)
  const sig = k.alg === 'RS256'
    ? sign('sha256', Buffer.from(input), keyObject)
    : sign('sha256', Buffer.from(input), { key: keyObject, dsaEncoding: 'ieee-p1363' })
  return `${input}.${sig.toString('base64url')}`
}

/** An attacker's own key pair, with its public JWK and a self-signed certificate for `x5c`. */
export interface AttackerKey {
  alg: 'RS256'
  kid: string
  privateKey: CryptoKey
  publicJwk: JWK
  certDerB64: string
}

export async function attackerKey(): Promise<AttackerKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true })
  const kid = `attacker-${randomUUID().slice(0, 8)}`
  x509.cryptoProvider.set(globalThis.crypto)
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=attacker', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
    keys: { privateKey, publicKey }, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  })
  return { alg: 'RS256', kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }, certDerB64: Buffer.from(cert.rawData).toString('base64') }
}

/** Claims of a valid provisioner token at the given IAM, as JSON text fragments can be appended to. */
export function provisionerClaims(iss: string, aud: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return {
    iss, sub: randomUUID(), aud, 'wlcg.ver': '1.0', scope: 'openid', 'wlcg.groups': [],
    client_id: 'ctb-cloud-a-provisioner', jti: randomUUID(), iat: now, nbf: now, exp: now + 3600, ...extra,
  }
}

/** JSON of an object with raw member text spliced in at the end (for duplicate members). */
export function jsonWith(obj: Record<string, unknown>, rawMembers: string): string {
  const base = JSON.stringify(obj)
  return `${base.slice(0, -1)}${Object.keys(obj).length > 0 ? ',' : ''}${rawMembers}}`
}
