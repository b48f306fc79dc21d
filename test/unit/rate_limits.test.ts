import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { openRequestLimits } from '../../src/ratelimit/open_request_limits.ts'
import { RateLimitsConfigSchema } from '../../src/ratelimit/rate_limit_config.ts'
import { RequestLimits } from '../../src/ratelimit/request_limits.ts'
import { RateLimiterMemory } from 'rate-limiter-flexible'
import { silentLogger } from '../../src/lib/logger.ts'

const memory = (o: { points: number; duration: number; keyPrefix: string }) => new RateLimiterMemory(o)
const limitsOf = (section: unknown, auditWindowSeconds = 30) =>
  new RequestLimits(RateLimitsConfigSchema.parse(section), { shared: memory, local: memory }, { auditWindowSeconds })
const alice = { iss: 'https://iam.example.org/', sub: 'alice' }
const bob = { iss: 'https://iam.example.org/', sub: 'bob' }

function configError(yaml: string, env: NodeJS.ProcessEnv = {}): string {
  const f = join(mkdtempSync(join(tmpdir(), 'ctb-rl-')), 'broker.yaml')
  writeFileSync(f, yaml)
  try {
    loadConfig({ file: f, env })
  } catch (e) {
    return (e as Error).message
  }
  return ''
}

describe('rate_limits configuration', () => {
  it('limits nothing by default', () => {
    const c = loadConfig({ env: {} }).rate_limits
    expect(c.store).toBe('auto')
    expect(c.caller.requests).toBe(0)
    expect(c.role.requests).toBe(0)
    expect(c.roles).toEqual({})
    expect(c.address).toMatchObject({ requests: 0, per: 10, burst: 0 })
    expect(limitsOf({}).limitsCallers).toBe(false)
  })

  it('reads limits from YAML with durations, and from CTB_* variables', () => {
    const f = join(mkdtempSync(join(tmpdir(), 'ctb-rl-')), 'broker.yaml')
    writeFileSync(f, 'rate_limits:\n  caller: { requests: 100, per: 1m, burst: 20, burst_per: 1h }\n  roles:\n    pilot: { requests: 5, per: 10s }\n')
    const c = loadConfig({ file: f, env: { CTB_RATE_LIMITS_ADDRESS_REQUESTS: '50' } }).rate_limits
    expect(c.caller).toEqual({ requests: 100, per: 60, burst: 20, burst_per: 3600 })
    expect(c.roles.pilot).toEqual({ requests: 5, per: 10, burst: 0, burst_per: 600 })
    // The address window defaults to 10 s, the others to a minute.
    expect(c.address).toEqual({ requests: 50, per: 10, burst: 0, burst_per: 600, ipv6_prefix: 64 })
    expect(loadConfig({ env: { CTB_RATE_LIMITS_ADDRESS_IPV6_PREFIX: '56' } }).rate_limits.address.ipv6_prefix).toBe(56)
  })

  it('refuses an unknown key at its line, with the key named', () => {
    const msg = configError('rate_limits:\n  caller:\n    request: 10\n')
    expect(msg).toMatch(/broker\.yaml:3:5: rate_limits\.caller: unknown key "request"/)
  })

  it.each([
    ['rate_limits:\n  caller: { requests: -1 }\n', /rate_limits\.caller\.requests: must be at least 0/],
    ['rate_limits:\n  caller: { requests: 10, per: 0 }\n', /rate_limits\.caller\.per: must be at least 1 seconds/],
    ['rate_limits:\n  role: { requests: 10, per: 1h, burst: 5, burst_per: 1m }\n', /rate_limits\.role\.burst_per: must not be shorter than per/],
    ['rate_limits:\n  caller: { burst: 5 }\n', /rate_limits\.caller\.burst: needs requests above 0/],
    ['rate_limits:\n  address: { ipv6_prefix: 16 }\n', /rate_limits\.address\.ipv6_prefix: must be at least 32/],
    ['rate_limits:\n  address: { ipv6_prefix: 129 }\n', /rate_limits\.address\.ipv6_prefix: must be at most 128/],
    ['rate_limits:\n  address: { ipv6_prefix: 64.5 }\n', /rate_limits\.address\.ipv6_prefix: must be a whole number/],
    ['rate_limits:\n  caller: { ipv6_prefix: 64 }\n', /rate_limits\.caller: unknown key "ipv6_prefix"/],
    ['rate_limits:\n  store: redis\n', /rate_limits\.store: /],
    ['rate_limits:\n  store: postgres\n', /rate_limits\.store: rate_limits\.store "postgres" uses the audit database: it needs audit\.store "postgres"/],
  ])('refuses %j', (yaml, expected) => {
    expect(configError(yaml)).toMatch(expected)
  })

  it('counts in memory on SQLite, and on memory when told so even with PostgreSQL', async () => {
    const sqlite = await openRequestLimits(loadConfig({ env: { CTB_RATE_LIMITS_CALLER_REQUESTS: '5' } }), { log: silentLogger })
    expect(sqlite.store).toBe('memory')
    const pgButMemory = await openRequestLimits(loadConfig({ env: {
      CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: 'postgres://nobody@127.0.0.1:1/none', CTB_RATE_LIMITS_STORE: 'memory', CTB_RATE_LIMITS_CALLER_REQUESTS: '5',
    } }), { log: silentLogger })
    expect(pgButMemory.store).toBe('memory')
  })
})

describe('RequestLimits', () => {
  beforeEach(() => { vi.useFakeTimers({ now: 1_800_000_000_000 }) })
  afterEach(() => { vi.useRealTimers() })

  it('admits `requests` per caller in a window, then refuses with the seconds left until it ends', async () => {
    const limits = limitsOf({ caller: { requests: 3, per: 60 } })
    for (let i = 0; i < 3; i++) expect(await limits.admit(alice, 'startd')).toBeUndefined()
    vi.advanceTimersByTime(20_500)
    const refused = await limits.admit(alice, 'startd')
    // 60 s window opened at t=0; 20.5 s later 39.5 s are left, rounded up to whole seconds.
    expect(refused).toMatchObject({ limit: 'caller', retryAfter: 40 })
    expect(refused!.description).toBe('too many requests from this caller: at most 3 per 60 s; retry after 40 s')
    // Another caller has its own allowance.
    expect(await limits.admit(bob, 'startd')).toBeUndefined()
    vi.advanceTimersByTime(39_500)
    expect(await limits.admit(alice, 'startd')).toBeUndefined()
  })

  it('spends the burst reserve once the steady allowance is used up, and says when the earliest refills', async () => {
    const limits = limitsOf({ caller: { requests: 2, per: 10, burst: 3, burst_per: 100 } })
    const outcomes: Array<number | undefined> = []
    for (let i = 0; i < 6; i++) outcomes.push((await limits.admit(alice, undefined))?.retryAfter)
    // 2 steady + 3 from the reserve, then refused until the 10 s window refills.
    expect(outcomes).toEqual([undefined, undefined, undefined, undefined, undefined, 10])
    vi.advanceTimersByTime(10_000)
    // The steady window refilled; the reserve (100 s) did not.
    expect(await limits.admit(alice, undefined)).toBeUndefined()
    expect(await limits.admit(alice, undefined)).toBeUndefined()
    expect((await limits.admit(alice, undefined))?.retryAfter).toBe(10)
  })

  it('limits a role across callers, with per-role overrides and exemptions', async () => {
    const limits = limitsOf({ role: { requests: 2, per: 60 }, roles: { pilot: { requests: 1, per: 30 }, monitoring: { requests: 0 } } })
    expect(await limits.admit(alice, 'startd')).toBeUndefined()
    expect(await limits.admit(bob, 'startd')).toBeUndefined()
    const refused = await limits.admit(alice, 'startd')
    expect(refused).toMatchObject({ limit: 'role', retryAfter: 60 })
    expect(refused!.description).toBe("too many requests for role 'startd': at most 2 per 60 s; retry after 60 s")
    expect(await limits.admit(alice, 'pilot')).toBeUndefined()
    expect(await limits.admit(bob, 'pilot')).toMatchObject({ limit: 'role', retryAfter: 30 })
    for (let i = 0; i < 5; i++) expect(await limits.admit(alice, 'monitoring')).toBeUndefined()
    // A request whose role is unknown (malformed) counts only against the caller limit, here none.
    expect(await limits.admit(alice, undefined)).toBeUndefined()
  })

  it('asks for one record per caller and audit window, then only counts', async () => {
    const limits = limitsOf({ caller: { requests: 1, per: 5 } }, 30)
    await limits.admit(alice, undefined)
    const flags: boolean[] = []
    for (let second = 0; second < 40; second++) {
      const r = await limits.admit(alice, undefined)
      if (r) flags.push(r.record)
      vi.advanceTimersByTime(1000)
    }
    // A new 5 s window admits one request at t = 5, 10, … 35: refused 33 of 40 seconds, recorded at t=0 and t=30.
    expect(flags.length).toBe(33)
    expect(flags.filter((f) => f)).toHaveLength(2)
    // Bob's first refusal is recorded although Alice's window is running.
    await limits.admit(bob, undefined)
    expect((await limits.admit(bob, undefined))?.record).toBe(true)
  })

  it('blocks an address once its refused unauthenticated requests are over the limit, until its window ends', async () => {
    const limits = limitsOf({ address: { requests: 3, per: 10 } })
    for (let i = 0; i < 2; i++) {
      limits.noteRefused('192.0.2.7')
      await vi.advanceTimersByTimeAsync(0)
      expect(limits.blockedAddress('192.0.2.7')).toBeUndefined()
    }
    // The third refusal uses up the limit: the fourth request is the first refused for its address.
    limits.noteRefused('192.0.2.7')
    await vi.advanceTimersByTimeAsync(2_000)
    expect(limits.blockedAddress('192.0.2.7')).toMatchObject({ limit: 'address', retryAfter: 8, record: false })
    expect(limits.blockedAddress('198.51.100.1')).toBeUndefined()
    expect(limits.blockedAddress(undefined)).toBeUndefined()
    await vi.advanceTimersByTimeAsync(8_000)
    expect(limits.blockedAddress('192.0.2.7')).toBeUndefined()
  })

  it('with a burst reserve, blocks an address only once the reserve is spent too', async () => {
    const limits = limitsOf({ address: { requests: 1, per: 10, burst: 2, burst_per: 60 } })
    for (let i = 0; i < 3; i++) {
      limits.noteRefused('192.0.2.7')
      await vi.advanceTimersByTimeAsync(0)
      expect(limits.blockedAddress('192.0.2.7')).toBeUndefined()
    }
    limits.noteRefused('192.0.2.7')
    await vi.advanceTimersByTimeAsync(0)
    expect(limits.blockedAddress('192.0.2.7')).toMatchObject({ retryAfter: 10 })
  })

  it('counts the IPv6 addresses of one /64 together, and IPv4-mapped addresses as IPv4', async () => {
    const limits = limitsOf({ address: { requests: 2, per: 10 } })
    limits.noteRefused('2001:db8:0:7::1')
    limits.noteRefused('2001:0db8:0:7:ffff::2')
    await vi.advanceTimersByTimeAsync(0)
    expect(limits.blockedAddress('2001:db8:0:7::99')).toMatchObject({ limit: 'address' })
    expect(limits.blockedAddress('2001:db8:0:8::1')).toBeUndefined()
    limits.noteRefused('::ffff:192.0.2.7')
    limits.noteRefused('192.0.2.7')
    await vi.advanceTimersByTimeAsync(0)
    expect(limits.blockedAddress('192.0.2.7')).toMatchObject({ limit: 'address' })
    expect(limits.blockedAddress('::ffff:192.0.2.7')).toMatchObject({ limit: 'address' })
    expect(limits.blockedAddress('192.0.2.8')).toBeUndefined()
  })

  it('keys IPv6 addresses by the configured prefix', async () => {
    const limits = limitsOf({ address: { requests: 1, per: 10, ipv6_prefix: 48 } })
    limits.noteRefused('2001:db8:1:2::1')
    await vi.advanceTimersByTimeAsync(0)
    expect(limits.blockedAddress('2001:db8:1:ffff::1')).toMatchObject({ limit: 'address' })
    expect(limits.blockedAddress('2001:db8:2::1')).toBeUndefined()
  })

  it('leaves addresses alone when the address limit is off', async () => {
    const limits = limitsOf({ address: { requests: 0 } })
    for (let i = 0; i < 100; i++) limits.noteRefused('192.0.2.7')
    await vi.advanceTimersByTimeAsync(0)
    expect(limits.blockedAddress('192.0.2.7')).toBeUndefined()
  })
})

describe('RequestLimits between caller and role', () => {
  it('does not let a caller over its own limit use up the role that others share', async () => {
    const limits = limitsOf({ caller: { requests: 1, per: 60 }, role: { requests: 3, per: 60 } })
    expect(await limits.admit(alice, 'startd')).toBeUndefined()
    for (let i = 0; i < 10; i++) expect(await limits.admit(alice, 'startd')).toMatchObject({ limit: 'caller' })
    // Alice took one of the role's three; two are left for others.
    expect(await limits.admit(bob, 'startd')).toBeUndefined()
    expect(await limits.admit({ ...bob, sub: 'carol' }, 'startd')).toBeUndefined()
    expect(await limits.admit({ ...bob, sub: 'dave' }, 'startd')).toMatchObject({ limit: 'role' })
  })
})
