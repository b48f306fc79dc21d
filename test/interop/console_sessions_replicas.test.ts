import { request } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunningBroker } from '../../src/server.ts'
import { startE2e, startReplica, type E2e } from '../support/broker_e2e.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

// Two brokers (replicas) on one real PostgreSQL server started for this file on 127.0.0.1 (Debian package
// `postgresql`), as behind a load balancer without sticky sessions: a console session opened on one is
// honoured by the other, and signing out on either ends it on both.

let server: TestPostgres
let a: E2e
let b: RunningBroker
beforeAll(async () => {
  server = await startPostgres()
  const dsn = await server.createDatabase('console_replicas')
  a = await startE2e({ CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn })
  b = await startReplica(a)
})
afterAll(async () => {
  await b?.close()
  await a?.close()
  await server?.stop()
})

interface Page { status: number; location: string | undefined; cookies: Record<string, string>; text: string }

/** One HTTPS request to a replica, cookies in and out, the body as text. */
function call(base: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Page> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, ca: a.ca, headers, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => {
        const cookies: Record<string, string> = {}
        for (const line of res.headers['set-cookie'] ?? []) {
          const [pair] = line.split(';')
          const eq = pair!.indexOf('=')
          cookies[pair!.slice(0, eq)] = pair!.slice(eq + 1)
        }
        resolve({ status: res.statusCode ?? 0, location: res.headers.location, cookies, text })
      })
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end(body)
  })
}

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString()
const csrfOf = (page: Page) => /name="csrf" value="([^"]+)"/.exec(page.text)?.[1]

describe('console sessions on PostgreSQL hold across replicas', () => {
  it('honours on replica B a sign-in made on replica A, and a sign-out on B ends it on A', async () => {
    expect(a.broker.url).not.toBe(b.url)
    const originA = new URL(a.broker.services.config.issuer).origin
    const originB = new URL(b.services.config.issuer).origin

    // Sign in on A with an admin's IAM access token (the development IAM's alice holds the admin grant).
    const signInPage = await call(a.broker.url, 'GET', '/console/sign-in', {})
    const pre = signInPage.cookies['__Host-ctb-console-pre']!
    const signedIn = await call(a.broker.url, 'POST', '/console/sign-in/token',
      { origin: originA, cookie: `__Host-ctb-console-pre=${pre}`, 'content-type': 'application/x-www-form-urlencoded' },
      form({ csrf: csrfOf(signInPage)!, token: await a.user('alice') }))
    expect(signedIn.status).toBe(200)
    const cookie = `__Host-ctb-console=${signedIn.cookies['__Host-ctb-console']!}`

    const onA = await call(a.broker.url, 'GET', '/console', { cookie })
    const onB = await call(b.url, 'GET', '/console', { cookie })
    expect(onA.status).toBe(200)
    expect(onB.status).toBe(200)
    const signedInAs = (page: Page) => /signed in as <span class="mono">([^<]+)</.exec(page.text)?.[1]
    expect(signedInAs(onB)).toMatch(/^https?:\/\/127\.0\.0\.1:\d+\/,/)
    expect(signedInAs(onB)).toBe(signedInAs(onA))
    expect(csrfOf(onB)).toBe(csrfOf(onA))

    const out = await call(b.url, 'POST', '/console/sign-out',
      { origin: originB, cookie, 'content-type': 'application/x-www-form-urlencoded' }, form({ csrf: csrfOf(onB)! }))
    expect(out.status).toBe(303)
    expect(out.location).toBe('/console/sign-in?signed-out')
    for (const base of [a.broker.url, b.url]) {
      const after = await call(base, 'GET', '/console', { cookie })
      expect(after.status).toBe(303)
      expect(after.location).toBe('/console/sign-in')
    }
  })
})
