/**
 * Retry-After (RFC 9110 §10.2.3) as every client reads it: `delay-seconds` (1*DIGIT) or an HTTP-date, which
 * §5.6.7 has a recipient accept in all three forms. The broker sends delay-seconds; a proxy or load balancer
 * in front of it may send a date, and a client that ignored one would retry sooner than it was asked to.
 */

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const MONTH = MONTHS.join('|')
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})'
/** Sun, 06 Nov 1994 08:49:37 GMT */
const IMF_FIXDATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) (${MONTH}) (\\d{4}) ${TIME} GMT$`)
/** Sunday, 06-Nov-94 08:49:37 GMT */
const RFC850_DATE = new RegExp(`^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-(${MONTH})-(\\d{2}) ${TIME} GMT$`)
/** Sun Nov  6 08:49:37 1994 (the day space-padded) */
const ASCTIME_DATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (${MONTH}) ([ \\d]\\d) ${TIME} (\\d{4})$`)

/** Milliseconds since the epoch, or undefined when a field is out of range (31 Feb, 24:00:00). */
function utc(year: number, month: string, day: number, h: number, m: number, s: number): number | undefined {
  const mon = MONTHS.indexOf(month)
  if (h > 23 || m > 59 || s > 60 || day < 1) return undefined
  // 60 is a leap second (§5.6.7: up to 23:59:60), which POSIX time has not: read as the second after :59. The
  // date is checked at :59, since Date.UTC rolls :60 over and, at 23:59, into the next day.
  const t = Date.UTC(year, mon, day, h, m, Math.min(s, 59))
  const d = new Date(t)
  return d.getUTCFullYear() === year && d.getUTCMonth() === mon && d.getUTCDate() === day ? t + (s === 60 ? 1000 : 0) : undefined
}

/** An HTTP-date (RFC 9110 §5.6.7) in milliseconds since the epoch; undefined for anything else. */
export function parseHttpDate(value: string, nowMs: number): number | undefined {
  let m = IMF_FIXDATE.exec(value)
  if (m) return utc(Number(m[3]), m[2]!, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]))
  m = ASCTIME_DATE.exec(value)
  if (m) return utc(Number(m[6]), m[1]!, Number(m[2]!.trim()), Number(m[3]), Number(m[4]), Number(m[5]))
  m = RFC850_DATE.exec(value)
  if (m) {
    // §5.6.7: a two-digit year whose date is more than 50 years in the future is the most recent past year
    // ending in those digits. Judged by the date, not the year alone: seen on 1 Dec 2026, 31-Dec-76 is more
    // than 50 years ahead (so 1976), 30-Nov-76 is not. The same window read backwards: a date 50 years past
    // or more is the next century's.
    const now = new Date(nowMs)
    const nowYear = now.getUTCFullYear()
    const shifted = (years: number) => Date.UTC(nowYear + years, now.getUTCMonth(), now.getUTCDate(), now.getUTCHours(), now.getUTCMinutes(), now.getUTCSeconds(), now.getUTCMilliseconds())
    const [day, h, min, sec] = [Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])]
    let year = Math.floor(nowYear / 100) * 100 + Number(m[3])
    // Compared before the fields are checked (Date.UTC rolls over), so 29-Feb of a year that has none is refused below.
    const at = Date.UTC(year, MONTHS.indexOf(m[2]!), day, h, min, sec)
    if (at > shifted(50)) year -= 100
    else if (at <= shifted(-50)) year += 100
    return utc(year, m[2]!, day, h, min, sec)
  }
  return undefined
}

/**
 * The seconds a Retry-After asks to wait, counted from `nowMs`: whole delay-seconds, or the time until its
 * HTTP-date rounded up (0 once it is past). Undefined when the header is absent or is neither form, so the
 * caller falls back to its own backoff. Not capped here: each client caps with its own reason.
 */
export function retryAfterSeconds(value: string | null | undefined, nowMs: number): number | undefined {
  const v = value?.trim()
  if (!v) return undefined
  if (/^\d+$/.test(v)) return Math.min(Number(v), Number.MAX_SAFE_INTEGER)
  const at = parseHttpDate(v, nowMs)
  return at === undefined ? undefined : Math.max(0, Math.ceil((at - nowMs) / 1000))
}
