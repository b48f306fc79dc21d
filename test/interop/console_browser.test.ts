// The console in a real browser: Debian's Chromium driven by playwright-core, signing in through the
// development IAM's login page, against a broker on its embedded defaults (plus users' job credentials,
// so that the Credentials page has a stored credential with a refresh to show). Screenshots of every page go
// to .test-output/console (CTB_TEST_ARTIFACTS overrides); CTB_UPDATE_DOCS_SCREENSHOT=1 also refreshes
// docs/console-overview.png.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { buildIdTokenClaims, mintIdToken } from '../../src/issuance/idtoken.ts'
import { launchChromium, verifiedLeafSpki } from '../support/chromium.ts'
import { tempDir } from '../support/tmp.ts'
import { claimsOf, exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'

const ARTIFACTS = resolve(process.env.CTB_TEST_ARTIFACTS ?? '.test-output/console')
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
// A hostile caller's scope: tags and quotes that the broker's refusal quotes into the audited reason.
const HOSTILE_SCOPE = `<img/src=x/onerror=alert(1)><script>alert("xss")</script>`

let e: E2e
let browser: Awaited<ReturnType<typeof launchChromium>>
let page: Page
let base: string
const jtis: string[] = []
let issuedCount = 0
const dialogs: string[] = []
const cspMessages: string[] = []

async function shot(name: string): Promise<string> {
  const file = join(ARTIFACTS, `${name}.png`)
  await page.screenshot({ path: file, fullPage: true })
  return file
}

/** Signs in at the development IAM; an admin lands on the overview (after the callback's refresh), others stay on the callback's refusal. */
async function signIn(user: string, landsOn: RegExp): Promise<void> {
  await page.goto(`${base}/console`, { waitUntil: 'load' })
  expect(page.url()).toBe(`${base}/console/sign-in`)
  await page.click('#sign-in-iam')
  await page.waitForURL(/\/authorize\?/, { waitUntil: 'load' })
  await Promise.all([page.waitForURL(landsOn, { waitUntil: 'load' }), page.click(`button[value="${user}"]`)])
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  const config = join(tempDir('ctb-console-'), 'broker.yaml')
  writeFileSync(config, 'credentials:\n  enabled: true\n  providers:\n    - { name: cms, kind: iam, role: job-credentials }\n')
  e = await startE2e({ CTB_CONFIG: config })
  base = e.broker.services.config.issuer
  const issue = async (token: string, role: string, extra: Record<string, string> = {}) => {
    const res = await e.post('/token', exchangeForm(token, role, extra))
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    issuedCount++
    return res.body.access_token as string
  }
  const alice = await e.user('alice')
  for (let i = 0; i < 3; i++) jtis.push(claimsOf(await issue(alice, 'submit-user')).jti as string)
  await issue(await e.robot('ctb-cloud-a-cm'), 'central-manager', { host: 'cm.cloud-a.example.org', requested_token_type: IDTOKEN })
  await issue(await e.robot('ctb-monitoring'), 'monitoring', { requested_token_type: IDTOKEN })
  // A pilot: enrolment (issued), then one node's redemption (issued) and a renewal.
  const factory = await e.robot('ctb-hpc-b-pilot-factory')
  const credential = await issue(factory, 'pilot', { requested_token_type: ENROLMENT, pilot_count: '2', lifetime: '3600', site: 'hpc-b' })
  const jobEnd = String(Math.floor(Date.now() / 1000) + 3000)
  const redeemed = await e.post('/token', { grant_type: exchangeForm('', '').grant_type!, subject_token: credential, subject_token_type: ENROLMENT, slurm_job_id: '4242', node: 'node-7', job_end: jobEnd })
  expect(redeemed.status, JSON.stringify(redeemed.body)).toBe(200)
  issuedCount++
  const renewed = await e.post('/token', { grant_type: exchangeForm('', '').grant_type!, subject_token: redeemed.body.access_token as string, subject_token_type: IDTOKEN })
  expect(renewed.status, JSON.stringify(renewed.body)).toBe(200)
  issuedCount++
  // alice stores a job credential (the development IAM grants offline_access), and a credd fetches
  // one job token with it: an IAM refresh, recorded as issued.
  const { accessToken } = await devIamUserToken(e.devIam, 'alice', { scope: 'openid profile wlcg wlcg.groups offline_access compute.read storage.read:/store/user' })
  const registered = await e.postJson('/v1/credentials', { provider: 'cms' }, { authorization: `Bearer ${accessToken}` })
  expect(registered.status, JSON.stringify(registered.body)).toBe(201)
  const jobToken = await e.get('/v1/credentials/alice/cms/token', { authorization: `Bearer ${creddToken()}` })
  expect(jobToken.status, JSON.stringify(jobToken.body)).toBe(200)
  issuedCount++
  // Refusals, one of them quoting the hostile scope into its audit record.
  expect((await e.post('/token', exchangeForm(await e.user('carol'), 'submit-user'))).status).toBeGreaterThanOrEqual(400)
  expect((await e.post('/token', exchangeForm(alice, 'submit-user', { scope: HOSTILE_SCOPE }))).status).toBe(400)

  browser = await launchChromium({ pinnedSpki: await verifiedLeafSpki('127.0.0.1', e.broker.port, e.ca) })
  page = await browser.context.newPage()
  page.on('dialog', (d) => { dialogs.push(d.message()); void d.dismiss() })
  page.on('console', (m) => { if (/Content Security Policy/.test(m.text())) cspMessages.push(m.text()) })
}, 120_000)

/** An access point's credd, as the policy's credd grant would issue it: signed with the broker's IDTOKEN key. */
function creddToken(): string {
  const claims = buildIdTokenClaims({ trustDomain: 'pool.example.org', subject: 'credd-ap1@aps.pool.example.org', authz: ['DAEMON'], lifetimeSeconds: 600, now: Math.floor(Date.now() / 1000), extra: { ctb_role: 'credd', ctb_gen: 0 } })
  return mintIdToken(claims, e.broker.services.keys.idtoken)
}

afterAll(async () => {
  await browser?.close()
  await e?.close()
})

describe('console in Chromium', () => {
  it('signs an admin in through the development IAM and shows the issuances on the overview', async () => {
    await signIn('alice', /\/console$/)
    expect(page.url()).toBe(`${base}/console`)
    await expect.poll(() => page.locator('h2', { hasText: 'Issued by role' }).innerText()).toBe(`Issued by role (${issuedCount})`)
    expect(await page.locator('.legend').first().innerText()).toContain('submit-user')
    expect(await page.locator('#chain-status').innerText()).toBe('verified')
    expect(await page.locator('header .who').innerText()).toContain(e.devIam.config.users.find((u) => u.username === 'alice')!.sub)
    const file = await shot('overview')
    if (process.env.CTB_UPDATE_DOCS_SCREENSHOT === '1') copyFileSync(file, resolve('docs/console-overview.png'))
  })

  it('finds a jti and shows the record verifying in its chain position', async () => {
    await page.goto(`${base}/console/search`, { waitUntil: 'load' })
    await page.fill('input[name="jti"]', jtis[1]!)
    await Promise.all([page.waitForURL(/\/console\/search\?/, { waitUntil: 'load' }), page.click('form.search button[type="submit"]')])
    const rows = page.locator('#results tbody tr')
    expect(await rows.count()).toBe(1)
    expect(await rows.first().innerText()).toContain(jtis[1]!)
    await shot('search')
    await Promise.all([page.waitForURL(/\/console\/records\/\d+$/, { waitUntil: 'load' }), rows.first().locator('a').first().click()])
    expect(await page.locator('#record-verifies').innerText()).toBe('yes')
    expect(await page.locator('#record-event').innerText()).toContain(jtis[1]!)
    await shot('record')
  })

  it('lists the live pilot with its last renewal', async () => {
    await page.goto(`${base}/console/pilots`, { waitUntil: 'load' })
    const table = await page.locator('main table').innerText()
    expect(table).toContain('hpc-b')
    expect(table).toContain('4242')
    expect(table).toContain('node-7')
    expect(table).toMatch(/ago\)/)
    await shot('pilots')
  })

  it('lists alice\'s stored credential with its last refresh, and revokes it after a confirmation', async () => {
    await page.goto(`${base}/console/credentials`, { waitUntil: 'load' })
    const row = page.locator('#credentials tbody tr', { hasText: 'alice' })
    expect(await row.count()).toBe(1)
    const text = await row.innerText()
    expect(text).toContain('cms')
    expect(text).toContain('https://storage.cloud-a.example.org')
    expect(text).toContain('compute.read')
    expect(text).toMatch(/ago\)/)
    expect(text).toContain('active')
    // The last refresh links the job token's audit record.
    expect(await row.locator('a[href^="/console/records/"]').count()).toBe(1)
    await shot('credentials')
    await Promise.all([page.waitForLoadState('load'), row.locator('button:has-text("revoke")').click()])
    await page.fill('#confirm input[name="reason"]', 'console browser test')
    await shot('credentials-confirm')
    await Promise.all([page.waitForLoadState('load'), page.click('#confirm button.danger')])
    expect(await page.locator('#revoked-credential').innerText()).toBe('alice/cms')
    expect(await page.locator('#credentials tbody tr', { hasText: 'alice' }).innerText()).toContain('revoked')
    await shot('credentials-revoked')
    expect((await e.get('/v1/credentials/alice/cms/token', { authorization: `Bearer ${creddToken()}` })).status).toBe(403)
    const audit = await e.get('/v1/audit?type=credential.revoked', { authorization: `Bearer ${await e.user('alice')}` })
    const records = audit.body.records as Array<{ event: { caller?: { sub?: string }; reason?: string; detail?: { user?: string; provider?: string } } }>
    expect(records).toHaveLength(1)
    expect(records[0]!.event).toMatchObject({ reason: 'console browser test', detail: { user: 'alice', provider: 'cms' } })
    expect(records[0]!.event.caller?.sub).toContain(e.devIam.config.users.find((u) => u.username === 'alice')!.sub)
  })

  it('revokes a jti after a dry run and a confirmation; the revocation reaches the condor expression and the audit', async () => {
    await page.goto(`${base}/console/act`, { waitUntil: 'load' })
    await page.selectOption('select[name="kind"]', 'jti')
    await page.fill('input[name="value"]', jtis[0]!)
    await page.fill('input[name="reason"]', 'console browser test')
    await Promise.all([page.waitForLoadState('load'), page.click('button:has-text("Dry run")')])
    expect(await page.locator('#dry-run-count').innerText()).toBe('1')
    await shot('act-confirm')
    await Promise.all([page.waitForLoadState('load'), page.click('#confirm button.danger')])
    expect(await page.locator('#revocation-id').innerText()).toMatch(/^\d+$/)
    await shot('act-done')
    const admin = { authorization: `Bearer ${await e.user('alice')}` }
    const condor = await e.get('/v1/revocations/condor?format=json', admin)
    expect(condor.body.expr).toContain(jtis[0]!)
    const audit = await e.get('/v1/audit?type=token.revoked', admin)
    const records = audit.body.records as Array<{ event: { caller?: { sub?: string }; detail?: { revocation?: { value?: string; reason?: string } } } }>
    expect(records).toHaveLength(1)
    expect(records[0]!.event.detail?.revocation).toMatchObject({ value: jtis[0], reason: 'console browser test' })
    expect(records[0]!.event.caller?.sub).toContain(e.devIam.config.users.find((u) => u.username === 'alice')!.sub)
  })

  it('shows hostile audit strings as text: no markup, no script, no CSP violation', async () => {
    await page.goto(`${base}/console/search?decision=deny`, { waitUntil: 'load' })
    const text = await page.locator('#results').innerText()
    expect(text).toContain('<script>alert(?xss?)</script>')
    expect(text).toContain('<img/src=x/onerror=alert(1)>')
    expect(await page.locator('main script, main img').count()).toBe(0)
    await shot('search-hostile')
    await page.goto(`${base}/console`, { waitUntil: 'load' })
    expect(await page.locator('main').innerText()).toContain('<script>alert(?xss?)</script>')
    expect(await page.locator('main script, main img').count()).toBe(0)
    expect(dialogs).toEqual([])
    expect(cspMessages).toEqual([])
  })

  it('refuses a non-admin after sign-in at IAM', async () => {
    await Promise.all([page.waitForURL(/\/console\/sign-in/, { waitUntil: 'load' }), page.click('header .who button')])
    await signIn('bob', /\/console\/callback\?/)
    expect(await page.locator('main').innerText()).toContain('You are not an admin of this broker')
    await shot('refused')
    await page.goto(`${base}/console`, { waitUntil: 'load' })
    expect(page.url()).toBe(`${base}/console/sign-in`)
  })
})
