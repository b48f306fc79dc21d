import { Hono } from 'hono'

export type ReadinessCheck = () => Promise<Record<string, 'ok' | string>>

/** Liveness says the process answers; readiness says it can issue (keys loaded, stores reachable). */
export function healthRoutes(readiness: ReadinessCheck): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', async (c) => {
    const checks = await readiness()
    const ready = Object.values(checks).every((v) => v === 'ok')
    return c.json({ status: ready ? 'ready' : 'not_ready', checks }, ready ? 200 : 503)
  })
  return app
}
