import { Hono, type MiddlewareHandler } from 'hono'

/** The metrics page as the edge sees it: text and the content type it is in. */
export type MetricsPage = () => Promise<{ contentType: string; body: string }>

/**
 * GET /metrics: the Prometheus text exposition format. Behind `auth` when the operator closed it
 * (metrics.auth); never cached, since every scrape must see current counts.
 */
export function metricsRoutes(options: { page: MetricsPage; auth?: MiddlewareHandler | undefined }): Hono {
  const app = new Hono()
  if (options.auth) app.use('/metrics', options.auth)
  app.get('/metrics', async (c) => {
    const { contentType, body } = await options.page()
    c.header('Cache-Control', 'no-store')
    c.header('Content-Type', contentType)
    return c.body(body)
  })
  return app
}
