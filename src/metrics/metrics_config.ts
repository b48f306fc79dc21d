import { z } from 'zod'
import { Bool, integer } from '../lib/config_values.ts'

/**
 * `metrics:` section: GET /metrics in the Prometheus text format (docs/metrics.md). Prometheus usually
 * scrapes without credentials, and nothing on the page is a secret (counts by role, site and reason), so
 * the default is open; `bearer` (a token file Prometheus reads as `credentials_file`) or `admin` (the admin
 * API's own bearer authentication) close it.
 */
export const MetricsConfigSchema = z.strictObject({
  enabled: Bool.default(true),
  /** none: anyone who reaches the listener; bearer: the token in bearer_token_file; admin: any admin bearer token. */
  auth: z.enum(['none', 'bearer', 'admin']).default('none'),
  /** Token file for auth "bearer" (one line, at least 32 characters, mode 0600); created when missing. */
  bearer_token_file: z.string().min(1).optional(),
  /** Node's process metrics (CPU, memory, event loop, GC), prom-client's default set. */
  process: Bool.default(true),
  /**
   * Your rotation schedule, in days since each key was created: /metrics shows the time left until the
   * next rotation is due (negative once overdue). 0: no schedule, no such series for that key.
   */
  key_rotation_days: z.strictObject({
    idtoken: integer(0, 36_500).default(365),
    scitoken: integer(0, 36_500).default(180),
  }).prefault({}),
}).superRefine((m, ctx) => {
  if (m.auth === 'bearer' && !m.bearer_token_file) {
    ctx.addIssue({ code: 'custom', path: ['bearer_token_file'], message: 'metrics.auth "bearer" needs metrics.bearer_token_file' })
  }
  if (m.auth !== 'bearer' && m.bearer_token_file) {
    ctx.addIssue({ code: 'custom', path: ['bearer_token_file'], message: 'metrics.bearer_token_file applies only to metrics.auth "bearer"' })
  }
}).prefault({})

export type MetricsConfig = z.infer<typeof MetricsConfigSchema>
