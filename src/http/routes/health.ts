import { Hono } from 'hono'

export type ReadinessCheck = () => Promise<Record<string, 'ok' | string>>
/** Why the process is no longer live (a write path stopped for good), or undefined while it is. */
export type LivenessCheck = () => string | undefined
/** Reachability of each trusted IAM, reported beside readiness (not part of it). */
export type IamStatusCheck = () => Promise<Record<string, unknown>>

/**
 * Liveness says the process answers; readiness says it can issue (keys loaded and self-tested, audit
 * records committing). IAM reachability is shown under `iam` but does not decide readiness: every replica
 * shares the IAM, so taking them all out of rotation would only replace our 503 temporarily_unavailable
 * (and the tokens still verifiable from cached keys) with a load balancer's error page.
 * Liveness fails only for what nothing but a restart cures (the audit write path stopped for good; serve
 * is then on its way out with status 70): an outage the broker recovers from is readiness's business.
 */
export function healthRoutes(readiness: ReadinessCheck, iamStatus?: IamStatusCheck, liveness?: LivenessCheck): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => {
    const failing = liveness?.()
    return failing === undefined ? c.json({ status: 'ok' }) : c.json({ status: 'failing', reason: failing }, 503)
  })
  app.get('/readyz', async (c) => {
    const [checks, iam] = await Promise.all([readiness(), iamStatus?.()])
    const ready = Object.values(checks).every((v) => v === 'ok')
    return c.json({ status: ready ? 'ready' : 'not_ready', checks, ...(iam ? { iam } : {}) }, ready ? 200 : 503)
  })
  return app
}
