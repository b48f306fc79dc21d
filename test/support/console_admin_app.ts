import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { createHash } from 'node:crypto'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import type { MemoryStore } from '../../src/storage/memory_store.ts'
import { expect } from 'vitest'
import { testDeps } from './broker_deps.ts'
import { cookieOf, signInWithToken } from './console_sign_in.ts'

/**
 * The admin API and the console over `store`, admitting `bootstrapToken` (sign in with signInWithToken), for
 * the tests that edit stored records by hand and read them back through both. Revocations may name role
 * startd and site cloud-a.
 */
export function consoleAdminApp(store: MemoryStore, bootstrapToken: string, now: number): ReturnType<typeof createApp> {
  const revocations = new RevocationService({
    store, clock: fixedClock(now), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['startd']), sites: new Set(['cloud-a']) }),
  })
  return createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(bootstrapToken).digest())] },
    console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
  }))
}

/** A startd IDTOKEN issued to cloud-a's provisioner at `time` (policies/10-cloud-htc.yaml), valid a day. */
export function startdIssuance(time: number): AuditEvent {
  return {
    type: 'token.issued', time, caller: { iss: 'https://iam.example.org/', sub: 'ctb-cloud-a-provisioner', client_id: 'ctb-cloud-a-provisioner' },
    role: 'startd', tokenKind: 'idtoken', site: 'cloud-a', decision: 'allow', issuedSub: 'startd-cloud-a-ep-17@eps.pool.example.org',
    jti: 'fa60db71b73be01eaf46681bd3668d1b', exp: time + 86400,
  }
}

/** Signs in with `bootstrapToken` and reads the console's page of record `seq` (fails the test unless 200). */
export async function consoleRecordPage(app: ReturnType<typeof createApp>, bootstrapToken: string, origin: string, seq: number): Promise<string> {
  const res = await signInWithToken(app, bootstrapToken, origin)
  const cookie = `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
  const page = await app.request(`/console/records/${seq}`, { headers: { cookie } })
  expect(page.status).toBe(200)
  return page.text()
}

/** What the record page says under "verifies". */
export const recordVerifies = (body: string): string | undefined => /<dd id="record-verifies">(.*?)<\/dd>/s.exec(body)?.[1]
