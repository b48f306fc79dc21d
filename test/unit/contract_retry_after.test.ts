import { describe, expect, it } from 'vitest'
import { retryAfterSeconds } from '../../src/contract/retry_after.ts'

// RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds, delay-seconds = 1*DIGIT. §5.6.7: a recipient
// accepts all three HTTP-date forms (IMF-fixdate, the obsolete RFC 850 and asctime). Epoch values below were
// computed by hand (and with `date -u -d`), not by the code under test.
const SUN_06_NOV_1994_084937 = 784_111_777_000
const FRI_31_DEC_1999_235959 = 946_684_799_000

describe('retryAfterSeconds (RFC 9110 §10.2.3)', () => {
  it('reads delay-seconds, the RFC\'s example "120" included', () => {
    expect(retryAfterSeconds('120', 0)).toBe(120)
    expect(retryAfterSeconds('0', 0)).toBe(0)
    expect(retryAfterSeconds(' 7 ', 0)).toBe(7)
  })

  it('reads the RFC\'s HTTP-date example as the seconds from now until then', () => {
    expect(retryAfterSeconds('Fri, 31 Dec 1999 23:59:59 GMT', FRI_31_DEC_1999_235959 - 90_000)).toBe(90)
  })

  it.each([
    ['IMF-fixdate', 'Sun, 06 Nov 1994 08:49:37 GMT'],
    ['obsolete RFC 850', 'Sunday, 06-Nov-94 08:49:37 GMT'],
    ['asctime', 'Sun Nov  6 08:49:37 1994'],
  ])('reads the %s form of §5.6.7\'s example', (_, value) => {
    expect(retryAfterSeconds(value, SUN_06_NOV_1994_084937 - 30_000)).toBe(30)
  })

  it('rounds part of a second up, and a date already past is no wait', () => {
    expect(retryAfterSeconds('Sun, 06 Nov 1994 08:49:37 GMT', SUN_06_NOV_1994_084937 - 1_500)).toBe(2)
    expect(retryAfterSeconds('Sun, 06 Nov 1994 08:49:37 GMT', SUN_06_NOV_1994_084937 + 60_000)).toBe(0)
  })

  it('reads a two-digit RFC 850 year more than 50 years ahead as the last such year past (§5.6.7)', () => {
    // "Sunday, 06-Nov-94" seen in 2026: 2094 is more than 50 years ahead, so 1994.
    expect(retryAfterSeconds('Sunday, 06-Nov-94 08:49:37 GMT', SUN_06_NOV_1994_084937 + 32 * 365 * 86_400_000)).toBe(0)
    // "Thursday, 01-Jan-30 00:00:00 GMT" seen on 1 Jan 2029 00:00:00 UTC (1861920000): 2030, a year ahead.
    expect(retryAfterSeconds('Tuesday, 01-Jan-30 00:00:00 GMT', 1_861_920_000_000)).toBe(365 * 86_400)
  })

  it('reads a leap second, 23:59:60 (§5.6.7), as the second after 23:59:59', () => {
    // The leap second that ended 2016: POSIX time has no second for it, and 2017-01-01T00:00:00Z is 1483228800.
    expect(retryAfterSeconds('Sat, 31 Dec 2016 23:59:60 GMT', 1_483_228_800_000 - 30_000)).toBe(30)
  })

  it('judges "more than 50 years in the future" by the date itself, not by its year alone (§5.6.7)', () => {
    // Seen at 2026-12-01T00:00:00Z (1796083200, `date -u -d`): 2076-12-31 is 50 years and a month ahead, more
    // than 50 years, so the year is 1976 and the date long past; 2076-11-30 (3373920000) is less, so it stands.
    const DEC_01_2026 = 1_796_083_200_000
    expect(retryAfterSeconds('Thursday, 31-Dec-76 23:59:59 GMT', DEC_01_2026)).toBe(0)
    expect(retryAfterSeconds('Monday, 30-Nov-76 00:00:00 GMT', DEC_01_2026)).toBe(3_373_920_000 - 1_796_083_200)
  })

  it.each([
    [null], [undefined], [''], ['-5'], ['+5'], ['1.5'], ['5s'], ['1e3'], ['tomorrow'], ['2026-12-01'],
    ['Sun, 06 Nov 1994 08:49:37 UTC'], ['Sun, 6 Nov 1994 08:49:37 GMT'], ['Sun, 31 Feb 1994 08:49:37 GMT'],
    ['Sun, 06 Nov 1994 24:49:37 GMT'], ['Sun, 06 Foo 1994 08:49:37 GMT'], ['1994-11-06T08:49:37Z'],
  ])('is undefined for %j, which is neither', (value) => {
    expect(retryAfterSeconds(value, SUN_06_NOV_1994_084937)).toBeUndefined()
  })

  it('keeps a huge delay-seconds a finite number (the caller caps it)', () => {
    const s = retryAfterSeconds('9'.repeat(400), 0)
    expect(Number.isSafeInteger(s)).toBe(true)
    expect(s).toBeGreaterThan(86_400 * 365 * 100)
  })
})
