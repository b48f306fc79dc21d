import { randomBytes } from 'node:crypto'
import * as asn1js from 'asn1js'

/**
 * The pool CA's CRL numbers (RFC 5280 §5.2.3: increasing for the issuer, at most 20 octets). Broker
 * replicas share the CA key and sign CRLs on demand, but share no counter, so the number is made of what
 * each knows alone: the signing second above 64 low bits drawn at random. A later second always gives a
 * larger number, whichever replica signs; two replicas signing in one second get different numbers but
 * for a chance of 2^-63. Within one process each number is above the last, even in one second.
 * @see docs/pool-ca.md
 */

const LOW_BITS = 64n

/**
 * The number of a CRL signed at `now` (seconds) by a process whose last CRL number was `last` (0n for none).
 * The random part has its top bit clear, so the +1 steps of one process within a second stay in that
 * second's range (2^63 of them) and the number still tells the second it was signed in.
 */
export function nextCrlNumber(now: number, last: bigint): bigint {
  if (!Number.isSafeInteger(now) || now < 0) throw new TypeError(`the signing time ${now} is not whole seconds since the epoch`)
  const low = randomBytes(8)
  low[0]! &= 0x7f
  const drawn = (BigInt(now) << LOW_BITS) | low.readBigUInt64BE()
  return drawn > last ? drawn : last + 1n
}

/**
 * DER of the cRLNumber extension's value, an INTEGER. Not @peculiar/asn1-x509's CRLNumber (2.11): it
 * takes a JavaScript number (+value), which throws on a bigint, holds nothing past 2^53 exactly, and from
 * 2^60 comes out as an INTEGER with no contents. asn1js writes a bigint as a minimal two's-complement INTEGER (a zero octet first when
 * the top bit is set), so a positive number stays positive; 34 bits of seconds (to the year 2514) and 64
 * below make 13 octets.
 */
export function crlNumberDer(n: bigint): ArrayBuffer {
  if (n < 0n || n >= 1n << 159n) throw new RangeError('a CRL number is a non-negative INTEGER of at most 20 octets')
  return asn1js.Integer.fromBigInt(n).toBER()
}
