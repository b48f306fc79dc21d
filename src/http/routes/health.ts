import { Hono } from 'hono'

export type ReadinessCheck = () => Promise<Record<string, 'ok' | string>>
/** Reachability of each trusted IAM, reported beside readiness (not part of it). */
export type IamStatusCheck = () => Promise<Record<string, unknown>>

/**
 * Liveness says the process answers; readiness says it can issue (keys loaded and self-tested, audit
 * records committing). IAM reachability is shown under `iam` but does not decide readiness: every replica
 * shares the IAM, so taking them all out of rotation would only replace our 503 temporarily_unavailable
 * (and the tokens still verifiable from cached keys) with a load balancer's error page.
 */
export function healthRoutes(readiness: ReadinessCheck, iamStatus?: IamStatusCheck): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', async (c) => {
    const [checks, iam] = await Promise.all([readiness(), iamStatus?.()])
    const ready = Object.values(checks).every((v) => v === 'ok')
    return c.json({ status: ready ? 'ready' : 'not_ready', checks, ...(iam ? { iam } : {}) }, ready ? 200 : 503)
  })
  return app
}
