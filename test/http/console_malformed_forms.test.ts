import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { consoleAdminApp } from '../support/console_admin_app.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'

/**
 * The console's forms are read before anything else is decided (the sign-in form before anyone is signed
 * in). A body that does not parse as the form it claims to be is the client's error: a 400 invalid_request
 * (the API's error shape), never a 500 with an "unhandled error" in the log.
 */
const ORIGIN = 'https://broker.example.org'
const TOKEN = `boot-${'b'.repeat(40)}`
const NOW = 1_800_000_000

/** Bodies that claim a form type and are not one (RFC 7578 §4.1: a multipart body needs its boundary). */
const MALFORMED: [string, string, string][] = [
  ['multipart without its boundary parameter', 'multipart/form-data', '--x\r\nContent-Disposition: form-data; name="csrf"\r\n\r\na\r\n--x--\r\n'],
  ['multipart whose body never names the boundary', 'multipart/form-data; boundary=x', 'garbage'],
  ['multipart cut off after the first part header', 'multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="csrf"\r\n'],
]

async function signedIn(app: ReturnType<typeof consoleAdminApp>): Promise<string> {
  const res = await signInWithToken(app, TOKEN, ORIGIN)
  return `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
}

describe('console forms that do not parse', () => {
  const paths = ['/console/sign-in/token', '/console/sign-out', '/console/act/revoke', '/console/act/explain', '/console/credentials/revoke']
  for (const path of paths) {
    it.each(MALFORMED)(`POST ${path}: %s is a 400 invalid_request`, async (_name, contentType, body) => {
      const app = consoleAdminApp(new MemoryStore(), TOKEN, NOW)
      const cookie = path === '/console/sign-in/token' ? '' : await signedIn(app)
      const res = await app.request(path, { method: 'POST', headers: { origin: ORIGIN, 'content-type': contentType, ...(cookie ? { cookie } : {}) }, body })
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    })
  }
})
