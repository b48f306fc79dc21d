import { Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import type { AuditStore } from '../../audit/audit_log.ts'
import { InvalidRequest } from '../../errors.ts'
import { listLivePilots, type LiveWindow } from '../../issuance/pilot_list.ts'
import type { Clock } from '../../lib/clock.ts'
import { singleValuedQuery } from '../query_params.ts'

/** GET /v1/pilots query parameters; others are ignored. */
export const PilotsQuery = z.object({
  site: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'site must be a site label').optional(),
})

/** GET /v1/pilots[?site=SITE]: live SLURM pilots by site and job, with their last renewal (admin only). */
export function pilotRoutes(deps: { audit: Pick<AuditStore, 'query'>; auth: MiddlewareHandler; clock: Clock; window: LiveWindow }): Hono {
  const app = new Hono()
  app.use('/v1/pilots', deps.auth)
  app.get('/v1/pilots', async (c) => {
    const parsed = PilotsQuery.safeParse({ site: singleValuedQuery(c).site })
    if (!parsed.success) throw new InvalidRequest(parsed.error.issues[0]!.message)
    const { site } = parsed.data
    const pilots = await listLivePilots(deps.audit, deps.clock.now(), await deps.window(), site !== undefined ? { site } : {})
    c.header('Cache-Control', 'no-store')
    return c.json({ pilots })
  })
  return app
}
