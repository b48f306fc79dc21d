import { mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { brokerClient } from '../../src/clients/credmon/client.ts'
import { nodeCredDirFs } from '../../src/clients/credmon/cred_dir.ts'
import { Credmon } from '../../src/clients/credmon/credmon.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { BROKER, useCredentialsApp } from '../support/credentials_app.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * What a job holds must stay valid between two deliveries: HTCondor's starter copies `.use` into the job's
 * sandbox every SEC_CREDENTIAL_REFRESH (300 s) and the credmon scans every 60 s, so right after any scan the
 * token in `.use` must live at least 60 + 300 s more; a 20-minute token refreshed at half its life leaves
 * 600 (docs/credmon.md, "Refresh"). Our credmon against the real token route, whose cache hands a token
 * back while it has `credentials.minimum_seconds` left (300 in this broker's config, an operator's
 * choice within the allowed range), a 20-minute SciToken grant, time moved by a shared clock, each broker
 * answer taking a second.
 */
const clock = { t: 1_900_000_000, now() { return this.t } }
const t = await useCredentialsApp({ clock })

it('keeps a token in .use that outlives the next scan and the next starter copy, after every scan', async () => {
  const user = 'mira'
  const res = await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider: 'se-storage' })
  expect(res.status, await res.clone().text()).toBe(201)
  const top = (await res.json() as { top: Record<string, unknown> }).top

  const dir = tempDir('ctb-credmon-margin-')
  mkdirSync(join(dir, user))
  writeFileSync(join(dir, user, 'se-storage.top'), JSON.stringify(top), { mode: 0o600 })
  utimesSync(join(dir, user, 'se-storage.top'), clock.t, clock.t)
  const credd = t.creddToken({ exp: clock.t + 7 * 86400 })
  const client = brokerClient({
    brokerUrl: BROKER, credential: () => credd,
    fetch: async (url, init) => {
      const answer = await t.app.request(url, init)
      clock.t += 1
      return answer
    },
  })
  const credmon = new Credmon({ credDir: dir, providers: ['se-storage'], brokerUrl: BROKER, useFormat: 'json' }, { fs: nodeCredDirFs, clock, client, log: silentLogger })

  const left: number[] = []
  // A scan every 60 s for two hours.
  for (let scan = 0; scan <= 120; scan++) {
    await credmon.scan()
    const use = JSON.parse(readFileSync(join(dir, user, 'se-storage.use'), 'utf8')) as { access_token: string }
    const exp = (JSON.parse(Buffer.from(use.access_token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp
    left.push(exp - clock.t)
    clock.t += 60
  }
  // The floor HTCondor's cadence needs, and the credmon's own rule: replaced at half its life, so no less than
  // half of 1200 s is left after a scan, less the scan interval and the answer's second.
  expect(Math.min(...left), left.join(' ')).toBeGreaterThanOrEqual(60 + 300)
  expect(Math.min(...left), left.join(' ')).toBeGreaterThanOrEqual(1200 / 2 - 60 - 1)
})

it('keeps that margin when the credd stores the same .top again mid-life (two submits registering the same credential)', async () => {
  // Two condor_submit of one submit file register the same credential at once: the loser is answered 201
  // with the stored credential unchanged (docs/job-credentials.md), and the credd writes its .top again.
  // The broker's cached token is still the one in .use; asked without a minimum above what it has left, the
  // broker hands it back and the credmon's next refresh comes at a quarter of its life.
  const user = 'nora'
  const res = await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider: 'se-storage' })
  expect(res.status, await res.clone().text()).toBe(201)
  const top = (await res.json() as { top: Record<string, unknown> }).top

  const dir = tempDir('ctb-credmon-margin-')
  mkdirSync(join(dir, user))
  const topPath = join(dir, user, 'se-storage.top')
  writeFileSync(topPath, JSON.stringify(top), { mode: 0o600 })
  utimesSync(topPath, clock.t, clock.t)
  const credd = t.creddToken({ exp: clock.t + 7 * 86400 })
  const client = brokerClient({
    brokerUrl: BROKER, credential: () => credd,
    fetch: async (url, init) => {
      const answer = await t.app.request(url, init)
      clock.t += 1
      return answer
    },
  })
  const credmon = new Credmon({ credDir: dir, providers: ['se-storage'], brokerUrl: BROKER, useFormat: 'json' }, { fs: nodeCredDirFs, clock, client, log: silentLogger })

  const left: number[] = []
  for (let scan = 0; scan <= 40; scan++) {
    // The same .top stored again just before the 10th scan, close to the first token's half-life.
    if (scan === 10) {
      writeFileSync(topPath, JSON.stringify(top), { mode: 0o600 })
      utimesSync(topPath, clock.t - 1, clock.t - 1)
    }
    await credmon.scan()
    const use = JSON.parse(readFileSync(join(dir, user, 'se-storage.use'), 'utf8')) as { access_token: string }
    const exp = (JSON.parse(Buffer.from(use.access_token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp
    left.push(exp - clock.t)
    clock.t += 60
  }
  expect(Math.min(...left), left.join(' ')).toBeGreaterThanOrEqual(60 + 300)
  expect(Math.min(...left), left.join(' ')).toBeGreaterThanOrEqual(1200 / 2 - 60 - 1)
})
