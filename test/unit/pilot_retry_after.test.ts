import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { renderPilotScript } from '../../src/clients/pilot/render.ts'

// The pilot's own Retry-After reader (bash on the compute node, which cannot run src/contract), run alone
// against RFC 9110's values. Its clock is ctb_now, as in the script; expected values are hand-computed:
// Sun, 06 Nov 1994 08:49:37 GMT is 784111777 (`date -u -d`).
const script = renderPilotScript({
  site: 'S', partition: 'p', walltime: '60', nodes: 1, cpus: 1, memMb: 1000, drainSeconds: 60, brokerUrl: 'https://broker.example.org',
  caFile: '/ca.pem', enrolmentFile: '/e', logDir: '/l', collector: 'cm.example.org', trustDomain: 'pool.example.org', allowedOwners: ['alice'],
})
const fn = /^retry_after_seconds\(\) \{\n[\s\S]*?\n\}\n/m.exec(script)![0]

function read(value: string, now: number): string {
  return execFileSync('bash', ['-c', `ctb_now() { echo ${now}; }\n${fn}\nretry_after_seconds "$1"`, 'bash', value], { encoding: 'utf8' })
}

describe('the pilot reads Retry-After as RFC 9110 §10.2.3 says', () => {
  it.each([
    ['120', 0, '120'],
    ['007 ', 0, '7'],
    ['1234567', 0, '999999'],
    // delay-seconds is 1*DIGIT: leading zeros do not make a number longer than it is.
    ['0000005', 0, '5'],
    ['00000000000000000000120', 0, '120'],
    ['Sun, 06 Nov 1994 08:49:37 GMT', 784_111_777 - 30, '30'],
    ['Sunday, 06-Nov-94 08:49:37 GMT', 784_111_777 - 30, '30'],
    ['Sun Nov  6 08:49:37 1994', 784_111_777 - 30, '30'],
    ['Sun, 06 Nov 1994 08:49:37 GMT', 784_111_777 + 30, '0'],
    // The leap second that ended 2016 (§5.6.7 allows 23:59:60): the second after 23:59:59, 1483228800.
    ['Sat, 31 Dec 2016 23:59:60 GMT', 1_483_228_800 - 30, '30'],
    // Seen in 2029 (1861920000 is 1 Jan 2029): "30" is 2030, one year (365 days) ahead, not 1930.
    ['Tuesday, 01-Jan-30 00:00:00 GMT', 1_861_920_000, String(365 * 86_400)],
    // "More than 50 years in the future" is the date's, not its year's: seen at 2026-12-01T00:00:00Z
    // (1796083200), 2076-12-31 is past that (so 1976, long past) and 2076-11-30 (3373920000) is not.
    ['Thursday, 31-Dec-76 23:59:59 GMT', 1_796_083_200, '0'],
    ['Monday, 30-Nov-76 00:00:00 GMT', 1_796_083_200, String(3_373_920_000 - 1_796_083_200)],
  ])('%j at %i is %s seconds', (value, now, expected) => {
    expect(read(value, now)).toBe(expected)
  })

  it.each(['', 'tomorrow', 'next week', '-5', '1.5', 'Sun, 06 Nov 1994 08:49:37 UTC', 'Sun, 31 Feb 1994 08:49:37 GMT', '1994-11-06T08:49:37Z', 'Sun, 06 Nov 1994 08:49:37 GMT; rm -rf /'])(
    'is empty for %j, which is neither form', (value) => {
      expect(read(value, 784_111_777)).toBe('')
    })
})
