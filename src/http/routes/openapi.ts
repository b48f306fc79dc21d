import { Hono } from 'hono'

/**
 * GET /openapi.json: the OpenAPI 3.1 document of this broker. Built on the first request (zod's JSON Schema
 * conversion costs a few milliseconds that no test app or probe-only start should pay), then served as is.
 */
export function openApiRoutes(build: () => Record<string, unknown>): Hono {
  const app = new Hono()
  let body: string | undefined
  app.get('/openapi.json', (c) => {
    body ??= JSON.stringify(build())
    return c.body(body, 200, { 'Content-Type': 'application/json', 'Cache-Control': 'public, max-age=3600' })
  })
  return app
}
