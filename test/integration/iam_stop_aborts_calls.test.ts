import { afterEach, expect, it } from 'vitest'
import { createIamAdapter } from '../../src/iam/create_iam_adapter.ts'
import { IamConfigSchema } from '../../src/iam/iam_config.ts'
import { recordingLogger, silentServer, type LoopbackServer } from '../support/loopback_failures.ts'

const servers: LoopbackServer[] = []
afterEach(async () => { for (const s of servers.splice(0)) await s.close() })

/**
 * On SIGTERM the listener's grace ends the requests in flight, then the services close. An IAM call still
 * waiting then (an IAM that answers slowly: introspection, refresh, outbound exchange) kept the process
 * alive until IAM answered or iam.timeout_seconds (up to 120 s) ran out, long after serve had printed
 * "stopped": reproduced against a loopback IAM that answers introspection after 25 s, with a grace of 1 s
 * (the process exited 23.7 s after SIGTERM). Closing the IAM adapter must end its calls at once.
 */
it('closing the IAM adapter ends the IAM calls still waiting, well before their timeout', async () => {
  const silent = await silentServer()
  servers.push(silent)
  const issuer = 'https://iam.example.org/'
  const iam = IamConfigSchema.parse({ issuers: [{ issuer, discovery_url: `${silent.url}/.well-known/openid-configuration` }], timeout_seconds: 30, discovery_retry_seconds: 0 })
  const adapter = await createIamAdapter(iam, { log: recordingLogger() })
  const startedAt = performance.now()
  const call = adapter.discovery.configuration(issuer).then(() => 'answered', () => 'failed')
  await new Promise((r) => setTimeout(r, 200))
  adapter.close()
  const outcome = await Promise.race([call, new Promise((r) => setTimeout(() => r('still waiting'), 3_000))])
  expect(outcome).toBe('failed')
  expect(performance.now() - startedAt).toBeLessThan(3_000)
}, 20_000)
