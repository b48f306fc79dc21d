/**
 * RFC 8725 (JWT best current practice) attacks on the subject token of POST /token, through the socket
 * fast path and the hono route. None of these tokens may verify, so every refusal is one by an
 * unknown caller (refusal_audit.ts).
 */
import { exportJWK, exportSPKI } from 'jose'
import { KeyObject } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sendAttack, summarize, Tally } from './support/attack.ts'
import { attackerKey, b64, jsonWith, provisionerClaims, signRaw, type AttackerKey } from './support/forge.ts'
import { rawPost } from './support/raw_http.ts'
import { BROKER_AUDIENCE, encodeForm, exchangeForm, IDTOKEN, startSecurityBroker, viaApp, type SecurityBroker } from './support/security_broker.ts'

const HOST = 'ep-1.cloud-a.example.org'
const tally = new Tally()
let sb: SecurityBroker
let startSeq = 0
let attacker: AttackerKey

beforeAll(async () => {
  sb = await startSecurityBroker()
  attacker = await attackerKey()
  startSeq = await sb.auditHead()
})
afterAll(async () => { await sb?.close() })

interface Ctx { sb: SecurityBroker; attacker: AttackerKey }
type Make = (c: Ctx) => Promise<string> | string

const real = (c: Ctx) => ({ alg: c.sb.iam.signingKey.alg as 'RS256', privateKey: c.sb.iam.signingKey.privateKey })
const realKid = (c: Ctx) => c.sb.iam.signingKey.kid
const claims = (c: Ctx, extra: Record<string, unknown> = {}) => provisionerClaims(c.sb.iam.issuer, BROKER_AUDIENCE, extra)
/** Valid claims, signed by IAM's real key with the given header. */
const realSigned = (c: Ctx, header: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c), typ: 'at+jwt', ...header }), JSON.stringify(claims(c, extra)), real(c))
/** Valid claims, signed by the attacker's key. */
const attackerSigned = (c: Ctx, header: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  signRaw(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', ...header }), JSON.stringify(claims(c, extra)), c.attacker)
const valid = (c: Ctx) => c.sb.token.provisioner()
const segs = (t: string) => t.split('.') as [string, string, string]

const ALG_NONE: [string, Make][] = ['none', 'None', 'NONE', 'nOnE', 'none ', ' none'].flatMap((alg) => [
  [`alg ${JSON.stringify(alg)}, empty signature`, (c: Ctx) => `${b64(JSON.stringify({ alg, kid: realKid(c) }))}.${b64(JSON.stringify(claims(c)))}.`],
  [`alg ${JSON.stringify(alg)}, with a signature`, async (c: Ctx) => `${b64(JSON.stringify({ alg, kid: realKid(c) }))}.${b64(JSON.stringify(claims(c)))}.${segs(await valid(c))[2]}`],
] as [string, Make][])

const ALG_ODD: [string, Make][] = [
  ['no alg', (c) => signRaw(JSON.stringify({ kid: realKid(c) }), JSON.stringify(claims(c)), real(c))],
  ['alg ""', (c) => signRaw(JSON.stringify({ alg: '', kid: realKid(c) }), JSON.stringify(claims(c)), real(c))],
  ['alg null', (c) => signRaw(JSON.stringify({ alg: null, kid: realKid(c) }), JSON.stringify(claims(c)), real(c))],
  ['alg ["RS256"]', (c) => signRaw(JSON.stringify({ alg: ['RS256'], kid: realKid(c) }), JSON.stringify(claims(c)), real(c))],
  ['alg "rs256"', (c) => signRaw(JSON.stringify({ alg: 'rs256', kid: realKid(c) }), JSON.stringify(claims(c)), real(c))],
  ['alg "RS256 "', (c) => signRaw(JSON.stringify({ alg: 'RS256 ', kid: realKid(c) }), JSON.stringify(claims(c)), real(c))],
  ['alg ES256 header on an RS256 signature', (c) => signRaw(JSON.stringify({ alg: 'ES256', kid: realKid(c) }), JSON.stringify(claims(c)), real(c))],
]

const HMAC: [string, Make][] = [
  ...(['HS256', 'HS384', 'HS512'] as const).map((alg): [string, Make] => [`${alg} keyed with IAM's public key PEM`, async (c) =>
    signRaw(JSON.stringify({ alg, kid: realKid(c) }), JSON.stringify(claims(c)), { alg, secret: await exportSPKI(c.sb.iam.signingKey.publicKey) })]),
  ['HS256 keyed with the PEM without its final newline', async (c) =>
    signRaw(JSON.stringify({ alg: 'HS256', kid: realKid(c) }), JSON.stringify(claims(c)), { alg: 'HS256', secret: (await exportSPKI(c.sb.iam.signingKey.publicKey)).trimEnd() })],
  ['HS256 keyed with the public JWK JSON', async (c) =>
    signRaw(JSON.stringify({ alg: 'HS256', kid: realKid(c) }), JSON.stringify(claims(c)), { alg: 'HS256', secret: JSON.stringify(await exportJWK(c.sb.iam.signingKey.publicKey)) })],
  ['HS256 keyed with the public key DER', (c) =>
    signRaw(JSON.stringify({ alg: 'HS256', kid: realKid(c) }), JSON.stringify(claims(c)), { alg: 'HS256', secret: KeyObject.from(c.sb.iam.signingKey.publicKey).export({ type: 'spki', format: 'der' }) })],
  ['HS256 keyed with the modulus n', (c) =>
    signRaw(JSON.stringify({ alg: 'HS256', kid: realKid(c) }), JSON.stringify(claims(c)), { alg: 'HS256', secret: String(c.sb.iam.signingKey.publicJwk.n) })],
]

const KID: [string, Make][] = [
  ['kid path traversal', '../../../../../../dev/null'],
  ['kid path traversal to the broker key', '../../data/keys/condor/broker1'],
  ['kid SQL injection', "x' OR '1'='1"],
  ['kid SQL injection with comment', '1; DROP TABLE audit;--'],
  ['kid huge (8 KiB)', 'k'.repeat(8192)],
  ['kid with NUL', 'rsa\u0000'],
  ['kid percent-encoded traversal', '%2e%2e%2f%2e%2e%2fetc%2fpasswd'],
  ['kid as a number', 1 as unknown as string],
  ['kid as an object', { $ne: '' } as unknown as string],
].flatMap(([name, kid]) => [
  [`${name as string}, attacker key`, (c: Ctx) => attackerSigned(c, { kid })],
  [`${name as string}, IAM's key`, (c: Ctx) => realSigned(c, { kid })],
] as [string, Make][])

const KEY_URLS: [string, Make][] = [
  ['jku to a server the attacker runs', (c) => attackerSigned(c, { kid: c.attacker.kid, jku: `${c.sb.decoy.url}/jwks.json` })],
  ['x5u to a server the attacker runs', (c) => attackerSigned(c, { x5u: `${c.sb.decoy.url}/cert.pem` })],
  ['embedded jwk', (c) => attackerSigned(c, { kid: c.attacker.kid, jwk: c.attacker.publicJwk })],
  ['embedded x5c', (c) => attackerSigned(c, { x5c: [c.attacker.certDerB64] })],
  ['jku, x5u, jwk and x5c together, IAM\'s kid', (c) => attackerSigned(c, { kid: realKid(c), jku: `${c.sb.decoy.url}/jwks.json`, x5u: `${c.sb.decoy.url}/c.pem`, jwk: c.attacker.publicJwk, x5c: [c.attacker.certDerB64] })],
  ['jku with IAM\'s own JWKS path on the attacker host', (c) => attackerSigned(c, { kid: c.attacker.kid, jku: `${c.sb.decoy.url}/jwk` })],
]

const CRIT: [string, Make][] = [
  ['crit naming an unknown extension', (c) => realSigned(c, { crit: ['x-ctb'], 'x-ctb': true })],
  ['crit naming a registered claim', (c) => realSigned(c, { crit: ['exp'] })],
  ['crit empty', (c) => realSigned(c, { crit: [] })],
  ['crit b64 false', (c) => realSigned(c, { crit: ['b64'], b64: false })],
  ['crit not a list', (c) => realSigned(c, { crit: 'x-ctb', 'x-ctb': 1 })],
]

const NESTED: [string, Make][] = [
  ['a valid token as the payload of an attacker token (cty JWT)', async (c) =>
    signRaw(JSON.stringify({ alg: 'RS256', kid: c.attacker.kid, cty: 'JWT' }), JSON.stringify(await valid(c)), c.attacker)],
  ['a valid token as the payload of an IAM-signed token (cty JWT)', async (c) =>
    signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c), cty: 'JWT' }), JSON.stringify(await valid(c)), real(c))],
  ['JWE-shaped (five segments)', async (c) => `${b64(JSON.stringify({ alg: 'RSA-OAEP', enc: 'A256GCM', cty: 'JWT' }))}.${segs(await valid(c)).join('.')}.AAAA`],
]

const UNKNOWN_KEY: [string, Make][] = [
  ['attacker key with IAM\'s kid', (c) => attackerSigned(c, { kid: realKid(c) })],
  ['attacker key without kid', (c) => attackerSigned(c, {})],
  ['attacker key with a fresh kid', (c) => attackerSigned(c, { kid: c.attacker.kid })],
  ['IAM\'s key with a kid IAM does not publish', (c) => realSigned(c, { kid: 'rsa-00000000' })],
]

const SHAPE: [string, Make][] = [
  ['signature truncated by one character', async (c) => (await valid(c)).slice(0, -1)],
  ['signature truncated by half', async (c) => { const t = await valid(c); return t.slice(0, t.length - segs(t)[2].length / 2) }],
  ['signature removed, dot kept', async (c) => { const [h, p] = segs(await valid(c)); return `${h}.${p}.` }],
  ['header only', async (c) => segs(await valid(c))[0]],
  ['two segments', async (c) => { const [h, p] = segs(await valid(c)); return `${h}.${p}` }],
  ['padded with =', async (c) => `${await valid(c)}=`],
  ['padded segments', async (c) => segs(await valid(c)).map((s) => `${s}==`).join('.')],
  ['base64 instead of base64url', async (c) => segs(await valid(c)).map((s) => Buffer.from(s, 'base64url').toString('base64').replace(/=+$/, '')).join('.')],
  ['a space inside', async (c) => { const t = await valid(c); return `${t.slice(0, 20)} ${t.slice(20)}` }],
  ['leading and trailing spaces', async (c) => ` ${await valid(c)} `],
  ['percent-encoded dots', async (c) => (await valid(c)).replaceAll('.', '%2E')],
  ['extra trailing segment', async (c) => `${await valid(c)}.e30`],
  ['extra empty trailing segment', async (c) => `${await valid(c)}.`],
  ['extra leading segment', async (c) => `e30.${await valid(c)}`],
  ['payload segment swapped for another caller\'s', async (c) => { const [h, , s] = segs(await valid(c)); const other = segs(await c.sb.token.admin()); return `${h}.${other[1]}.${s}` }],
  ['a lone dot', () => '.'],
  ['two dots', () => '..'],
  ['non-ASCII', () => 'eyJhbGciOiJSUzI1NiJ9.ſ.ſ'],
  ['a NUL byte', async (c) => `${await valid(c)}\u0000`],
]

const DUPLICATES: [string, Make][] = [
  ['duplicate iss, the last one foreign', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), jsonWith(claims(c), '"iss":"https://evil.example/"'), real(c))],
  ['duplicate exp, the last one past', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), jsonWith(claims(c), `"exp":${Math.floor(Date.now() / 1000) - 3600}`), real(c))],
  ['duplicate aud, the last one foreign', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), jsonWith(claims(c), '"aud":"https://evil.example"'), real(c))],
  ['duplicate alg, the last one none', (c) => signRaw(jsonWith({ alg: 'RS256', kid: realKid(c) }, '"alg":"none"'), JSON.stringify(claims(c)), real(c))],
  ['duplicate client_id, attacker key', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: c.attacker.kid }), jsonWith(claims(c), '"client_id":"ctb-cloud-a-cm"'), c.attacker)],
]

const HUGE: [string, Make][] = [
  ['a 20 KiB claim, IAM\'s key', (c) => realSigned(c, {}, { pad: 'x'.repeat(20 * 1024) })],
  ['3000 groups, IAM\'s key', (c) => realSigned(c, {}, { 'wlcg.groups': Array.from({ length: 3000 }, (_, i) => `/g${i}`) })],
  ['a 12 KiB claim, attacker key', (c) => attackerSigned(c, { kid: realKid(c) }, { pad: 'x'.repeat(12 * 1024) })],
  ['deeply nested claim, attacker key', (c) => attackerSigned(c, { kid: realKid(c) }, { deep: JSON.parse(`${'['.repeat(2000)}${']'.repeat(2000)}`) })],
]

const now = () => Math.floor(Date.now() / 1000)
const TIMES: [string, Make][] = [
  ['expired beyond the skew', (c) => realSigned(c, {}, { exp: now() - 120, iat: now() - 3600, nbf: now() - 3600 })],
  ['exp as a string', (c) => realSigned(c, {}, { exp: String(now() + 3600) })],
  ['exp zero', (c) => realSigned(c, {}, { exp: 0 })],
  ['exp negative', (c) => realSigned(c, {}, { exp: -1 })],
  ['exp missing', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), JSON.stringify({ ...claims(c), exp: undefined }), real(c))],
  ['nbf in an hour', (c) => realSigned(c, {}, { nbf: now() + 3600 })],
  ['nbf as a string', (c) => realSigned(c, {}, { nbf: String(now()) })],
  ['iat in an hour', (c) => realSigned(c, {}, { iat: now() + 3600 })],
  ['iat as a string', (c) => realSigned(c, {}, { iat: String(now()) })],
  ['iat missing', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), JSON.stringify({ ...claims(c), iat: undefined }), real(c))],
  ['jti missing', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), JSON.stringify({ ...claims(c), jti: undefined }), real(c))],
]

const ISS: [string, Make][] = [
  ['iss without the trailing slash', (c) => realSigned(c, {}, { iss: c.sb.iam.issuer.replace(/\/$/, '') })],
  ['iss with a doubled trailing slash', (c) => realSigned(c, {}, { iss: `${c.sb.iam.issuer}/` })],
  ['iss in upper case scheme', (c) => realSigned(c, {}, { iss: c.sb.iam.issuer.replace('http://', 'HTTP://') })],
  ['iss with localhost for 127.0.0.1', (c) => realSigned(c, {}, { iss: c.sb.iam.issuer.replace('127.0.0.1', 'localhost') })],
  ['iss with a leading space', (c) => realSigned(c, {}, { iss: ` ${c.sb.iam.issuer}` })],
  ['iss with a fragment', (c) => realSigned(c, {}, { iss: `${c.sb.iam.issuer}#` })],
  ['iss with a query', (c) => realSigned(c, {}, { iss: `${c.sb.iam.issuer}?` })],
  ['iss as a list', (c) => realSigned(c, {}, { iss: [c.sb.iam.issuer] })],
  ['iss missing', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), JSON.stringify({ ...claims(c), iss: undefined }), real(c))],
  ['iss of another IAM, attacker key', (c) => attackerSigned(c, { kid: c.attacker.kid }, { iss: 'https://iam.evil.example/' })],
]

const AUD: [string, Make][] = [
  ['aud missing', (c) => signRaw(JSON.stringify({ alg: 'RS256', kid: realKid(c) }), JSON.stringify({ ...claims(c), aud: undefined }), real(c))],
  ['aud with a trailing slash', (c) => realSigned(c, {}, { aud: `${BROKER_AUDIENCE}/` })],
  ['aud in upper case', (c) => realSigned(c, {}, { aud: BROKER_AUDIENCE.toUpperCase() })],
  ['aud empty list', (c) => realSigned(c, {}, { aud: [] })],
  ['aud of another service', (c) => realSigned(c, {}, { aud: 'https://storage.example.org' })],
  ['aud the WLCG any-audience', (c) => realSigned(c, {}, { aud: 'https://wlcg.cern.ch/jwt/v1/any' })],
  ['aud as a number', (c) => realSigned(c, {}, { aud: 1 })],
]

const CLASSES: [string, [string, Make][]][] = [
  ['alg-none', ALG_NONE], ['alg-odd', ALG_ODD], ['hs256-public-key', HMAC], ['kid', KID], ['jku-x5u-jwk-x5c', KEY_URLS],
  ['crit', CRIT], ['nested', NESTED], ['unknown-key', UNKNOWN_KEY], ['token-shape', SHAPE], ['duplicate-claims', DUPLICATES],
  ['huge-claims', HUGE], ['exp-nbf-iat', TIMES], ['iss', ISS], ['aud', AUD],
]

describe('control: the request every attack is a variation of is accepted', () => {
  it('a provisioner gets a startd IDTOKEN through the socket and through the hono route', async () => {
    const body = encodeForm(exchangeForm(await sb.token.provisioner(), 'startd', { host: HOST, requested_token_type: IDTOKEN }))
    const socket = await rawPost(sb.port, '/token', body, { 'content-type': 'application/x-www-form-urlencoded' })
    expect(socket.kind === 'reply' && socket.status, JSON.stringify(socket)).toBe(200)
    const app = await viaApp(sb.app, 'POST', '/token', body, { 'content-type': 'application/x-www-form-urlencoded' })
    expect(app.status, app.text).toBe(200)
    expect(typeof app.json?.access_token).toBe('string')
  })
})

for (const [cls, cases] of CLASSES) {
  describe(`RFC 8725: ${cls}`, () => {
    it.each(cases)('%s', async (_name, make) => {
      const token = await make({ sb, attacker })
      await sendAttack(sb, tally, { cls, caller: 'unknown', form: exchangeForm(token, 'startd', { host: HOST }) })
    })
  })
}

describe('key URLs in headers are never followed', () => {
  it('the jku/x5u target received no request', () => {
    expect(tally.of('jku-x5u-jwk-x5c').sent).toBeGreaterThan(0)
    expect(sb.decoy.hits).toBe(0)
  })
})

summarize('RFC 8725 attacks on POST /token', () => sb, tally, () => startSeq)
