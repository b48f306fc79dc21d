import { z } from 'zod'

/**
 * Value types shared by the config sections. A value can come from YAML (a number, a boolean) or from a
 * CTB_* environment variable (always a string), so each accepts both forms; anything else is left as it
 * is, so the message names what is wrong ("must be a number") instead of a coerced NaN.
 */

const UNITS = { s: 1, m: 60, h: 3600, d: 86400 } as const

/** `90s`, `20m`, `12h`, `7d` as seconds; anything else unchanged (the schema then judges it). The syntax policy lifetimes use too. */
export function parseDuration(v: unknown): unknown {
  const m = typeof v === 'string' ? /^(\d+)(s|m|h|d)$/.exec(v.trim()) : null
  return m ? Number(m[1]) * UNITS[m[2] as keyof typeof UNITS] : v
}

/** A decimal number written as a string (an environment variable) becomes that number; nothing else is coerced. */
function numeric(v: unknown): unknown {
  return typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v
}

/** An integer within [min, max]. */
export function integer(min: number, max?: number) {
  let n = z.number({ error: 'must be a number' }).int('must be a whole number').min(min, `must be at least ${min}`)
  if (max !== undefined) n = n.max(max, `must be at most ${max}`)
  return z.preprocess(numeric, n)
}

export const DURATION_HINT = 'a number of seconds (3600) or a duration such as 90s, 20m, 12h, 7d'

/**
 * The longest interval a timer can wait: setInterval takes a 32-bit count of milliseconds and runs a longer
 * one every 1 ms instead (with only a warning). Bound for settings that drive a timer.
 */
export const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000)

/**
 * A duration in seconds: a number, or 90s / 20m / 12h / 7d. Positive unless `min` says otherwise;
 * whole seconds unless `fractional` (timeouts, where tests use fractions of a second).
 */
export function seconds(o: { min?: number; max?: number; fractional?: boolean } = {}) {
  let n = z.number({ error: `must be ${DURATION_HINT}` })
  if (!o.fractional) n = n.int(`must be a whole number of seconds (or ${DURATION_HINT})`)
  n = o.min === undefined ? n.positive('must be more than 0 seconds') : n.min(o.min, `must be at least ${o.min} seconds`)
  if (o.max !== undefined) n = n.max(o.max, `must be at most ${o.max} seconds`)
  return z.preprocess((v) => numeric(parseDuration(v)), n)
}

/** true or false (YAML booleans, or the strings an environment variable carries). */
export const Bool = z.preprocess(
  (v) => (v === 'true' ? true : v === 'false' ? false : v),
  z.boolean({ error: 'must be true or false' }),
)
