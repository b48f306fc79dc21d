import { describe, expect, it } from 'vitest'
import { addressKeyer, ipv6Groups } from '../../src/ratelimit/address_key.ts'

const by64 = addressKeyer(64)

describe('the address limit key', () => {
  it('keys an IPv4 address by itself', () => {
    expect(by64('192.0.2.7')).toBe('192.0.2.7')
    expect(by64('192.0.2.8')).toBe('192.0.2.8')
  })

  it('keys an IPv6 address by its /64, whatever its textual form', () => {
    const key = '2001:db8:0:0:0:0:0:0/64'
    for (const a of ['2001:db8::1', '2001:0db8:0:0::2', '2001:DB8:0000:0000:ffff:ffff:ffff:ffff', '2001:db8::a:b:c:d', '2001:db8::1%eth0']) {
      expect(by64(a), a).toBe(key)
    }
    expect(by64('2001:db8:0:1::1')).toBe('2001:db8:0:1:0:0:0:0/64')
    expect(by64('::1')).toBe('0:0:0:0:0:0:0:0/64')
  })

  it('treats an IPv4-mapped IPv6 address as the IPv4 address it carries', () => {
    expect(by64('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(by64('::FFFF:192.0.2.7')).toBe('192.0.2.7')
    expect(by64('0:0:0:0:0:ffff:c000:207')).toBe('192.0.2.7')
    // Not mapped: the IPv4-compatible form and NAT64 are IPv6 networks like any other.
    expect(by64('64:ff9b::192.0.2.7')).toBe('64:ff9b:0:0:0:0:0:0/64')
  })

  it('keeps as many leading bits as the configured prefix says', () => {
    expect(addressKeyer(48)('2001:db8:abcd:1234::1')).toBe('2001:db8:abcd:0:0:0:0:0/48')
    expect(addressKeyer(56)('2001:db8:abcd:12ff::1')).toBe('2001:db8:abcd:1200:0:0:0:0/56')
    expect(addressKeyer(60)('2001:db8:abcd:12ff::1')).toBe('2001:db8:abcd:12f0:0:0:0:0/60')
    expect(addressKeyer(128)('2001:db8::1')).toBe('2001:db8:0:0:0:0:0:1/128')
    expect(addressKeyer(128)('2001:db8::2')).toBe('2001:db8:0:0:0:0:0:2/128')
    expect(addressKeyer(32)('2001:db8:ffff::1')).toBe('2001:db8:0:0:0:0:0:0/32')
  })

  it('keys text that is no address as it is', () => {
    for (const a of ['2001:db8:::1', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3', 'g::1', '::ffff:300.1.1.1', '12345::1', 'localhost']) {
      expect(by64(a), a).toBe(a)
    }
  })

  it('parses the eight groups of every textual form', () => {
    expect(ipv6Groups('::')).toEqual([0, 0, 0, 0, 0, 0, 0, 0])
    expect(ipv6Groups('1::')).toEqual([1, 0, 0, 0, 0, 0, 0, 0])
    expect(ipv6Groups('1:2:3:4:5:6:7:8')).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(ipv6Groups('1:2:3:4:5:6:7::')).toEqual([1, 2, 3, 4, 5, 6, 7, 0])
    expect(ipv6Groups('::2:3:4:5:6:7:8')).toEqual([0, 2, 3, 4, 5, 6, 7, 8])
    expect(ipv6Groups('1:2:3:4:5:6:1.2.3.4')).toEqual([1, 2, 3, 4, 5, 6, 0x102, 0x304])
    // `::` is at least one group: with eight around it there is no room.
    expect(ipv6Groups('1:2:3:4::5:6:7:8')).toBeUndefined()
    expect(ipv6Groups('1.2.3.4::')).toBeUndefined()
    expect(ipv6Groups(':1::')).toBeUndefined()
  })
})
