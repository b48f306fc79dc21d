import { generateKeyPairSync } from 'node:crypto'
import { CompactSign } from 'jose'
import { buildIdTokenClaims, mintIdToken, prepareIdTokenKey } from '../src/issuance/idtoken.ts'
import { buildSciTokenClaims, mintSciToken, type AsymmetricKey } from '../src/issuance/scitoken.ts'
import { verifyMintedIdToken, verifyMintedSciToken } from '../src/issuance/verify_minted.ts'
import { deriveIdTokenKey } from '../src/keys/condor_key_file.ts'
import { jwkThumbprint } from '../src/keys/jwk.ts'
import { canonicalJson } from '../src/issuance/canonical_json.ts'

/** Runs `fn` repeatedly for about `ms` milliseconds and returns operations per second. */
export async function rate(fn: () => unknown | Promise<unknown>, ms = 1500): Promise<number> {
  for (let i = 0; i < 200; i++) await fn() // warm-up
  let n = 0
  const start = performance.now()
  const end = start + ms
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) await fn()
    n += 100
  }
  return Math.round(n / ((performance.now() - start) / 1000))
}

function asym(alg: 'ES256' | 'RS256'): AsymmetricKey {
  const { privateKey, publicKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { kid: jwkThumbprint(publicKey), alg, privateKey, publicKey }
}

/** Raw signing rates on one core: the ceiling for POST /token. */
export async function mintRates(): Promise<Record<string, number>> {
  const file = Buffer.alloc(64, 9)
  const idKey = prepareIdTokenKey('broker1', file)
  const now = Math.floor(Date.now() / 1000)
  const idReq = { trustDomain: 'pool.example.org', subject: 'startd-site1-abc@eps.pool.example.org', authz: ['READ', 'ADVERTISE_STARTD', 'ADVERTISE_MASTER'] as const, lifetimeSeconds: 3600, now }
  const out: Record<string, number> = {}
  out['idtoken: claims+sign (prepared HMAC)'] = await rate(() => mintIdToken(buildIdTokenClaims({ ...idReq, authz: [...idReq.authz] }), idKey))
  // What POST /token does per token is claims+sign (keys are self-tested once at load); the +verify rows
  // are what `token create` does, and what issuance did per token before that.
  out['idtoken: claims+sign+verify (token create)'] = await rate(() => {
    const c = buildIdTokenClaims({ ...idReq, authz: [...idReq.authz] })
    verifyMintedIdToken(mintIdToken(c, idKey), idKey, c)
  })
  const jwtKey = deriveIdTokenKey(file, 'broker1')
  out['idtoken: jose CompactSign (per-call import), for comparison'] = await rate(async () => {
    const c = buildIdTokenClaims({ ...idReq, authz: [...idReq.authz] })
    await new CompactSign(new TextEncoder().encode(canonicalJson(c))).setProtectedHeader({ alg: 'HS256', kid: 'broker1' }).sign(jwtKey)
  })
  for (const alg of ['ES256', 'RS256'] as const) {
    const k = asym(alg)
    const claims = () => buildSciTokenClaims({ issuer: 'https://broker.example.org', subject: 'alice', audience: ['condor://ap.example.org:9618'], scopes: ['condor:/READ', 'condor:/WRITE'], lifetimeSeconds: 1200, now, profile: 'wlcg' })
    out[`scitoken ${alg}: claims+sign`] = await rate(() => mintSciToken(claims(), k), 1000)
    out[`scitoken ${alg}: claims+sign+verify (token create)`] = await rate(() => {
      const c = claims()
      verifyMintedSciToken(mintSciToken(c, k), k, c)
    }, 1000)
  }
  return out
}
