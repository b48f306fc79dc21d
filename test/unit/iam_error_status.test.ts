// What an operator reads when IAM answers with a server error page: docs/iam-and-wlcg.md and `iam check`
// name it by its HTTP status ("HTTP 502"). The broker talks to IAM through npm undici (createIamFetch),
// whose Response is not the global class, so the status has to be found on the answer as it really arrives.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as oidc from 'openid-client'
import { afterEach, describe, expect, it } from 'vitest'
import { TemporarilyUnavailable } from '../../src/errors.ts'
import { iamFailureReason, mapIamError } from '../../src/iam/iam_errors.ts'
import { createIamFetch } from '../../src/iam/iam_fetch.ts'
import { silentLogger } from '../../src/lib/logger.ts'

const servers: Server[] = []
afterEach(async () => { for (const s of servers.splice(0)) await new Promise((r) => s.close(r)) })

/** A loopback IAM whose every endpoint answers this status with an HTML page (a proxy's error page). */
async function iamAnswering(status: number): Promise<string> {
  const s = createServer((_q, res) => { res.writeHead(status, { 'content-type': 'text/html' }); res.end('<html><body>Bad Gateway</body></html>') })
  servers.push(s)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/`
}

/** The error openid-client raises for a token request to that IAM, made through the broker's own fetch. */
async function tokenRequestError(iam: string): Promise<unknown> {
  const config = new oidc.Configuration({ issuer: iam, token_endpoint: `${iam}token` }, 'broker', 'secret')
  oidc.allowInsecureRequests(config)
  config[oidc.customFetch] = createIamFetch({ timeoutSeconds: 5 }) as never
  return oidc.clientCredentialsGrant(config).then(() => undefined, (err: unknown) => err)
}

describe('an IAM answering a server error page', () => {
  for (const status of [500, 502, 503]) {
    it(`is named HTTP ${status} by iam check's reason and in the 503's log line`, async () => {
      const err = await tokenRequestError(await iamAnswering(status))
      expect(err).toBeInstanceOf(Error)
      expect(iamFailureReason(err)).toBe(`HTTP ${status}`)
      const lines: string[] = []
      const log = { ...silentLogger, warn: (msg: string) => { lines.push(msg) } }
      const mapped = mapIamError(err, 'token exchange', 'https://iam.example.org/', log as never)
      expect(mapped).toBeInstanceOf(TemporarilyUnavailable)
      expect(lines.join('\n')).toContain(`: HTTP ${status}`)
    })
  }
})
