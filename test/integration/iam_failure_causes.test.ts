import { afterEach, describe, expect, it } from 'vitest'
import { TemporarilyUnavailable } from '../../src/errors.ts'
import { IamDiscovery } from '../../src/iam/discovery.ts'
import { IamConfigSchema } from '../../src/iam/iam_config.ts'
import { classifyIamFailure } from '../../src/iam/iam_failure.ts'
import { createIamFetch } from '../../src/iam/iam_fetch.ts'
import { systemClock } from '../../src/lib/clock.ts'
import { recordingLogger, refusedUrl, silentServer, UNRESOLVABLE_ISSUER, untrustedHttpsServer, type LoopbackServer } from '../support/loopback_failures.ts'
import { tempDir } from '../support/tmp.ts'

// Real failures through the production fetch (undici with timeouts), never msw: the point is what Node
// and undici actually report, which "fetch failed" used to hide.
const servers: LoopbackServer[] = []
afterEach(async () => { for (const s of servers.splice(0)) await s.close() })

async function discoverAt(issuer: string, discoveryUrl: string) {
  const log = recordingLogger()
  const iam = IamConfigSchema.parse({ issuers: [{ issuer, discovery_url: discoveryUrl }], timeout_seconds: 0.5, discovery_retry_seconds: 0 })
  const discovery = await IamDiscovery.create(iam, { fetch: createIamFetch({ timeoutSeconds: 0.5 }), clock: systemClock, log })
  const err = await discovery.configuration(issuer).then(() => undefined, (e: unknown) => e)
  return { err, log }
}

describe('IAM failures are logged with the URL and the cause', () => {
  it.each([
    ['dns', async (): Promise<string> => `${UNRESOLVABLE_ISSUER}.well-known/openid-configuration`],
    ['refused', (): Promise<string> => refusedUrl()],
    ['tls', async (): Promise<string> => { const s = await untrustedHttpsServer(tempDir()); servers.push(s); return `${s.url}/.well-known/openid-configuration` }],
    ['timeout', async (): Promise<string> => { const s = await silentServer(); servers.push(s); return `${s.url}/.well-known/openid-configuration` }],
  ] as const)('%s', async (cause, makeUrl) => {
    const url = await makeUrl()
    const { err, log } = await discoverAt('https://iam.example.org/', url)
    expect(err).toBeInstanceOf(TemporarilyUnavailable)
    expect(classifyIamFailure((err as Error).cause).cause).toBe(cause)
    const lines = log.lines.filter((l) => l.msg.startsWith('IAM unavailable'))
    expect(lines).toHaveLength(1)
    expect(lines[0]!.msg).toContain(url)
    expect(lines[0]!.msg).toContain(`: ${cause}`)
    expect(lines[0]!.fields).toMatchObject({ what: 'discovery', url, cause })
    expect(lines[0]!.msg).not.toContain('fetch failed')
  })
})

describe('classifyIamFailure', () => {
  it.each([
    ['EAI_AGAIN', 'dns'], ['ENOTFOUND', 'dns'], ['CERT_HAS_EXPIRED', 'tls'], ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls'],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'tls'], ['ECONNREFUSED', 'refused'], ['UND_ERR_HEADERS_TIMEOUT', 'timeout'], ['ECONNRESET', 'ECONNRESET'],
  ])('a fetch failure caused by %s is %s', (code, cause) => {
    const inner = Object.assign(new Error(`connect ${code}`), { code })
    expect(classifyIamFailure(new TypeError('fetch failed', { cause: inner }))).toMatchObject({ cause, code })
  })

  it('an abort or a deadline is a timeout', () => {
    expect(classifyIamFailure(new DOMException('The operation was aborted due to timeout', 'TimeoutError')).cause).toBe('timeout')
    expect(classifyIamFailure(new DOMException('This operation was aborted', 'AbortError')).cause).toBe('timeout')
  })
})
