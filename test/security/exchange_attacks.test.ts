/**
 * Attacks on the token exchange itself by callers IAM vouches for: asking for more than the policy
 * grants (roles, scopes, lifetimes, other sites), smuggling text into identity templates through
 * host/site/slurm_job_id/audience, repeating parameters, and presenting the broker's own tokens as
 * subject tokens. The callers are the repository's policies/ (cloud-a provisioner, hpc-b pilot
 * factory, /htc/users members, monitoring).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sendAttack, summarize, Tally } from './support/attack.ts'
import { encodeForm, exchangeForm, IDTOKEN, JWT_TYPE, startSecurityBroker, viaApp, type SecurityBroker } from './support/security_broker.ts'

const tally = new Tally()
let sb: SecurityBroker
let startSeq = 0

beforeAll(async () => {
  sb = await startSecurityBroker()
  startSeq = await sb.auditHead()
})
afterAll(async () => { await sb?.close() })

type Who = 'provisioner' | 'pilotFactory' | 'user' | 'monitoring'
/** name, caller, role, extra parameters, expected error code(s) when the attack has a defined answer */
type Case = [string, Who, string, Record<string, string | string[]>, (string | string[])?]

const EP = 'ep-1.cloud-a.example.org'
const startd = (extra: Record<string, string | string[]>) => ({ host: EP, ...extra })
const pilot = (extra: Record<string, string | string[]>) => ({ site: 'hpc-b', slurm_job_id: '12345', ...extra })
const userSciToken = (extra: Record<string, string | string[]>) => ({ requested_token_type: JWT_TYPE, audience: 'condor://ap1.cloud-a.example.org:9618', scope: 'compute.read', ...extra })

const WHITESPACE_AND_DELIMITERS = ['@evil.example', ',condor@pool.example.org', ' x', '\tx', '\r\nX-Injected: 1', '\n', '/x', '*', '$', '(x)', '[x]', '|x', '{trust_domain}', '\u017f', '"', '\\', '\u00a0']

const ROLE: Case[] = [
  ...['central-manager', 'schedd', 'credd', 'pilot', 'admin', 'monitoring', 'submit-user', 'job'].map((r): Case => [`another role: ${r}`, 'provisioner', r, startd({})]),
  ...['Startd', 'STARTD', ' startd', 'startd ', 'startd\t', 'startd\n', 'start d', 'startd,schedd', 'startd schedd', '\u017ftartd', 'startd\u0000', 'startd*', '*', '.*', 'star.d', 'startd"', 'startd\\', 'st\u00e4rtd']
    .map((r): Case => [`role ${JSON.stringify(r)}`, 'provisioner', r, startd({})]),
  ['monitoring asks for startd', 'monitoring', 'startd', startd({})],
  ['a user asks for admin', 'user', 'admin', {}],
]

const SCOPE: Case[] = [
  'condor:/ADMINISTRATOR', 'condor:/WRITE', 'condor:/DAEMON', 'condor:/NEGOTIATOR', 'condor:/ADVERTISE_STARTD condor:/WRITE',
  'condor:/advertise_startd condor:/administrator', 'condor:/Administrator', 'condor:/ADVERTI\u017fE_STARTD',
  'condor:/ADVERTISE_STARTD\tcondor:/WRITE', 'condor:/ADVERTISE_STARTD\ncondor:/ADMINISTRATOR', 'condor:/ADVERTISE_STARTD\rcondor:/ADMINISTRATOR',
  'condor:/*', 'condor:/ADVERTISE_STARTD,condor:/WRITE', 'condor:/ADVERTISE_STARTD,WRITE', 'condor:ADMINISTRATOR', 'condor://ADMINISTRATOR',
  'condor:/ADMINISTRATOR\u00a0', 'compute.create', 'condor:/ADVERTISE_STARTD condor:/ADVERTISE_STARTD_X',
].map((s): Case => [`startd scope ${JSON.stringify(s)}`, 'provisioner', 'startd', startd({ scope: s })])
  .concat([
    ['monitoring scope WRITE', 'monitoring', 'monitoring', { scope: 'condor:/READ condor:/WRITE' }],
    ['monitoring scope READ with a long s', 'monitoring', 'monitoring', { scope: 'condor:/REA\u0110' }],
  ])

const LIFETIME: Case[] = [
  ['startd lifetime one second over the 7 d maximum', 'provisioner', 'startd', startd({ lifetime: String(7 * 86400 + 1) }), 'invalid_request'],
  ['startd lifetime far over the maximum', 'provisioner', 'startd', startd({ lifetime: '999999999' }), 'invalid_request'],
  ['monitoring lifetime over the maximum', 'monitoring', 'monitoring', { lifetime: String(8 * 86400) }, 'invalid_request'],
  ...['0', '-1', '1.5', '1e3', '0x10', '9999999999', ' 60', '60 ', '+60', '60s', '\uff11\uff12', '\u0663', 'NaN', 'Infinity']
    .map((l): Case => [`startd lifetime ${JSON.stringify(l)}`, 'provisioner', 'startd', startd({ lifetime: l }), 'invalid_request']),
]

const HOST: Case[] = [
  ...WHITESPACE_AND_DELIMITERS.map((s): Case => [`host with ${JSON.stringify(s)} appended`, 'provisioner', 'startd', { host: `${EP}${s}` }]),
  ['host with @ inside', 'provisioner', 'startd', { host: 'ep-1@cloud-a.example.org' }],
  ['host a literal glob', 'provisioner', 'startd', { host: 'ep-*.cloud-a.example.org' }],
  ['host a regex', 'provisioner', 'startd', { host: 'ep-.*.cloud-a.example.org' }],
  ['host of the central manager', 'provisioner', 'startd', { host: 'cm.cloud-a.example.org' }],
  ['host of another site', 'provisioner', 'startd', { host: 'ep-1.hpc-b.example.org' }],
  ['host percent-encoded @', 'provisioner', 'startd', { host: `${EP}%40evil` }],
  ['host with a template', 'provisioner', 'startd', { host: 'ep-{host_short}.cloud-a.example.org' }],
  ['host missing', 'provisioner', 'startd', {}],
]

const SITE: Case[] = [
  ...WHITESPACE_AND_DELIMITERS.map((s): Case => [`site with ${JSON.stringify(s)} appended`, 'pilotFactory', 'pilot', pilot({ site: `hpc-b${s}` })]),
  ['site of another grant', 'pilotFactory', 'pilot', pilot({ site: 'cloud-a' })],
  ['site in upper case', 'pilotFactory', 'pilot', pilot({ site: 'HPC-B' })],
  ['site a regex', 'pilotFactory', 'pilot', pilot({ site: 'hpc-.*' })],
  ['site a template', 'pilotFactory', 'pilot', pilot({ site: '{site}' })],
  // The site is bound by the grant: a caller cannot stamp another site's label on its token.
  ['provisioner names the hpc-b site', 'provisioner', 'startd', startd({ site: 'hpc-b' }), ['unauthorized_client', 'invalid_request']],
  ['pilot factory names the cloud-a site', 'pilotFactory', 'pilot', pilot({ site: 'cloud-a' }), ['unauthorized_client', 'invalid_request']],
]

const SLURM: Case[] = [
  ...WHITESPACE_AND_DELIMITERS.map((s): Case => [`slurm_job_id with ${JSON.stringify(s)} appended`, 'pilotFactory', 'pilot', pilot({ slurm_job_id: `12345${s}` })]),
  ['slurm_job_id a path', 'pilotFactory', 'pilot', pilot({ slurm_job_id: '../12345' })],
  ['slurm_job_id a regex', 'pilotFactory', 'pilot', pilot({ slurm_job_id: '.*' })],
  ['slurm_job_id a template', 'pilotFactory', 'pilot', pilot({ slurm_job_id: '{jti8}' })],
  ['slurm_job_id 200 characters', 'pilotFactory', 'pilot', pilot({ slurm_job_id: '1'.repeat(200) })],
]

const AP = 'condor://ap1.cloud-a.example.org:9618'
const AUDIENCE: Case[] = [
  ...WHITESPACE_AND_DELIMITERS.map((s): Case => [`audience with ${JSON.stringify(s)} appended`, 'user', 'submit-user', userSciToken({ audience: `${AP}${s}` })]),
  ['audience a literal glob', 'user', 'submit-user', userSciToken({ audience: 'condor://ap*.cloud-a.example.org:9618' })],
  ['audience stretched across a path', 'user', 'submit-user', userSciToken({ audience: 'condor://ap.evil.example/.cloud-a.example.org:9618' })],
  ['audience stretched across userinfo', 'user', 'submit-user', userSciToken({ audience: 'condor://evil.example@ap1.cloud-a.example.org:9618' })],
  ['audience with another port', 'user', 'submit-user', userSciToken({ audience: 'condor://ap1.cloud-a.example.org:96180' })],
  ['audience with a suffix host', 'user', 'submit-user', userSciToken({ audience: `${AP}.evil.example` })],
  ['audience a regex', 'user', 'submit-user', userSciToken({ audience: 'condor://ap(.*).cloud-a.example.org:9618' })],
  ['audience of another service', 'user', 'submit-user', userSciToken({ audience: 'https://storage.example.org' })],
  ['audience any', 'user', 'submit-user', userSciToken({ audience: 'https://wlcg.cern.ch/jwt/v1/any' })],
  ['one good audience and one foreign', 'user', 'submit-user', userSciToken({ audience: [AP, 'https://evil.example'] })],
  ['resource foreign beside a good audience', 'user', 'submit-user', userSciToken({ resource: 'https://evil.example/' })],
  // Both match the grant's glob: one token for both access points would replay at either.
  ['two audiences the glob allows, one token', 'user', 'submit-user', userSciToken({ audience: [AP, 'condor://ap2.cloud-a.example.org:9618'] }), 'invalid_target'],
  ['resource naming another access point than audience', 'user', 'submit-user', userSciToken({ resource: 'condor://ap2.cloud-a.example.org:9618' }), 'invalid_target'],
]

const REPEATED: Case[] = [
  ['role twice, same value', 'provisioner', 'startd', startd({ role: ['startd', 'startd'] })],
  ['role twice, second wider', 'provisioner', 'startd', startd({ role: ['startd', 'central-manager'] })],
  ['scope twice', 'provisioner', 'startd', startd({ scope: ['condor:/ADVERTISE_STARTD', 'condor:/ADMINISTRATOR'] })],
  ['host twice', 'provisioner', 'startd', { host: [EP, 'cm.cloud-a.example.org'] }],
  ['lifetime twice', 'provisioner', 'startd', startd({ lifetime: ['60', '999999'] })],
  ['requested_token_type twice', 'provisioner', 'startd', startd({ requested_token_type: [IDTOKEN, JWT_TYPE] })],
  ['grant_type twice', 'provisioner', 'startd', startd({ grant_type: ['urn:ietf:params:oauth:grant-type:token-exchange', 'client_credentials'] })],
  ['subject_token_type twice', 'provisioner', 'startd', startd({ subject_token_type: ['urn:ietf:params:oauth:token-type:access_token', JWT_TYPE] })],
  ['site twice', 'pilotFactory', 'pilot', pilot({ site: ['hpc-b', 'cloud-a'] })],
  ['slurm_job_id twice', 'pilotFactory', 'pilot', pilot({ slurm_job_id: ['1', '2'] })],
]

const KIND: Case[] = [
  ['startd asks for a SciToken', 'provisioner', 'startd', startd({ requested_token_type: JWT_TYPE })],
  ['startd asks for a narrowed IAM token', 'provisioner', 'startd', startd({ requested_token_type: 'urn:ietf:params:oauth:token-type:access_token' })],
  ['startd asks for an unknown token type', 'provisioner', 'startd', startd({ requested_token_type: 'urn:ietf:params:oauth:token-type:id_token' })],
  ['an actor token', 'provisioner', 'startd', startd({ actor_token: 'x', actor_token_type: 'urn:ietf:params:oauth:token-type:access_token' })],
]

const CLASSES: [string, Case[]][] = [
  ['role-escalation', ROLE], ['scope-escalation', SCOPE], ['lifetime', LIFETIME], ['host-injection', HOST], ['site-injection', SITE],
  ['slurm-job-id-injection', SLURM], ['audience-injection', AUDIENCE], ['repeated-parameters', REPEATED], ['token-kind', KIND],
]

describe('controls: the requests the attacks vary are accepted', () => {
  it.each([
    ['provisioner startd', 'provisioner', 'startd', startd({})],
    ['pilot factory pilot', 'pilotFactory', 'pilot', pilot({})],
    ['user SciToken', 'user', 'submit-user', userSciToken({})],
    ['monitoring', 'monitoring', 'monitoring', {}],
  ] as [string, Who, string, Record<string, string>][])('%s', async (_n, who, role, extra) => {
    const res = await viaApp(sb.app, 'POST', '/token', encodeForm(exchangeForm(await sb.token[who](), role, extra)), { 'content-type': 'application/x-www-form-urlencoded' })
    expect(res.status, res.text).toBe(200)
  })

  it('a pilot request naming no site gets the one site its grant binds, not none', async () => {
    const res = await viaApp(sb.app, 'POST', '/token', encodeForm(exchangeForm(await sb.token.pilotFactory(), 'pilot', { slurm_job_id: '12345' })), { 'content-type': 'application/x-www-form-urlencoded' })
    expect(res.status, res.text).toBe(200)
    const claims = JSON.parse(Buffer.from((res.json!.access_token as string).split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>
    expect(claims.ctb_site).toBe('hpc-b')
  })

  it('a pilot lifetime beyond the maximum is trimmed (up_to), never granted', async () => {
    const res = await viaApp(sb.app, 'POST', '/token', encodeForm(exchangeForm(await sb.token.pilotFactory(), 'pilot', pilot({ lifetime: '999999999' }))), { 'content-type': 'application/x-www-form-urlencoded' })
    if (res.status === 200) expect(res.json!.expires_in).toBeLessThanOrEqual(7 * 86400)
    else expect(res.json!.error).toBe('invalid_request')
  })
})

for (const [cls, cases] of CLASSES) {
  describe(`exchange: ${cls}`, () => {
    it.each(cases)('%s', async (_name, who, role, extra, error) => {
      const token = await sb.token[who]()
      await sendAttack(sb, tally, { cls, caller: 'known', form: exchangeForm(token, role, extra), ...(error ? { error } : {}) })
    })
  })
}

describe('exchange: delegated subject tokens (act, RFC 8693 §4.1)', () => {
  // A token IAM issued to another client acting for the user: that client (or whoever holds its output)
  // would turn it into pool credentials as the user, a hop the user never asked this broker for.
  it.each([
    ['a user token another service obtained by exchange', 'user', 'submit-user', userSciToken({}), { act: { sub: 'fts-service' } }],
    ['a nested delegation chain', 'user', 'submit-user', userSciToken({}), { act: { sub: 'portal', act: { sub: 'gateway' } } }],
    ['a service token with act', 'provisioner', 'startd', startd({}), { act: { sub: 'other-client' } }],
    ['a pilot factory token with act, enrolling pilots', 'pilotFactory', 'pilot', { requested_token_type: 'urn:condor-token-broker:token-type:pilot-enrolment', site: 'hpc-b', pilot_count: '2' }, { act: { sub: 'other-client' } }],
  ] as [string, Who, string, Record<string, string>, Record<string, unknown>][])('%s is refused, naming the actor', async (_n, who, role, extra, claims) => {
    const before = await sb.auditHead()
    const res = await viaApp(sb.app, 'POST', '/token', encodeForm(exchangeForm(await sb.token[who](claims), role, extra)), { 'content-type': 'application/x-www-form-urlencoded' })
    expect(res.status, res.text).toBe(400)
    expect(res.json!.error).toBe('invalid_request')
    const description = `delegation not supported: subject_token was issued to '${(claims.act as { sub: string }).sub}' acting for its subject (act claim); present the caller's own IAM token`
    expect(res.json!.error_description).toBe(description)
    // Recorded, under the caller, with the actor named: who tried to use whose authority.
    const records = await sb.auditSince(before)
    expect(records.map((r) => r.event).filter((e) => e.type === 'token.denied')).toEqual([expect.objectContaining({ type: 'token.denied', role, reason: `invalid_request: ${description}` })])
  })
})

describe('exchange: the broker\'s own tokens as subject tokens', () => {
  const mintedBy = async (who: Who, role: string, extra: Record<string, string>) => {
    const res = await viaApp(sb.app, 'POST', '/token', encodeForm(exchangeForm(await sb.token[who](), role, extra)), { 'content-type': 'application/x-www-form-urlencoded' })
    expect(res.status, res.text).toBe(200)
    return res.json!.access_token as string
  }
  it.each([
    ['a broker IDTOKEN', 'provisioner', 'startd', startd({}), 'urn:ietf:params:oauth:token-type:access_token'],
    ['a broker IDTOKEN typed as jwt', 'provisioner', 'startd', startd({}), JWT_TYPE],
    ['a broker SciToken', 'user', 'submit-user', userSciToken({}), 'urn:ietf:params:oauth:token-type:access_token'],
    ['a broker SciToken typed as jwt', 'user', 'submit-user', userSciToken({}), JWT_TYPE],
  ] as [string, Who, string, Record<string, string>, string][])('%s', async (_n, who, role, extra, type) => {
    const minted = await mintedBy(who, role, extra)
    await sendAttack(sb, tally, { cls: 'broker-token-as-subject', caller: 'unknown', form: exchangeForm(minted, 'central-manager', { subject_token_type: type, host: 'cm.cloud-a.example.org' }) })
  })
  it('subject_token repeated (no single caller to name)', async () => {
    const t = await sb.token.provisioner()
    await sendAttack(sb, tally, { cls: 'repeated-parameters', caller: 'unknown', form: exchangeForm(t, 'startd', startd({ subject_token: [t, t] })) })
  })
})

summarize('token-exchange attacks on POST /token', () => sb, tally, () => startSeq)
