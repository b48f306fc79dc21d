import { webcrypto } from 'node:crypto'

/**
 * The pool CA's CRL (RFC 5280 §5.1), DER-encoded by hand. @peculiar/x509's X509CrlGenerator compares each
 * entry with every entry before it (quadratic: about 6 s for 10,000 entries, on the event loop), and an
 * identity revocation can hold thousands of certificates. The CRL has one fixed shape here (ECDSA P-256
 * with SHA-256, v2, the entries' reason code only), so its encoding is small; openssl and @peculiar/x509
 * both read it back in test/unit/pool_ca.test.ts.
 */

export interface CrlContent {
  /** DER of the issuer Name, exactly as in the CA certificate's subject. */
  issuer: Uint8Array
  thisUpdate: number
  nextUpdate: number
  /** Serials in hex, each once; `hold` adds reason code certificateHold. */
  entries: ReadonlyArray<{ serial: string; revokedAt: number; hold?: boolean }>
  /** DER of each CRL extension (an Extension SEQUENCE). */
  extensions: readonly Uint8Array[]
}

/** ecdsa-with-SHA256 (RFC 5758 §3.2): no parameters. */
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'))
const REASON_CODE = '2.5.29.21'
/** CRLReason certificateHold (RFC 5280 §5.3.1). */
const CERTIFICATE_HOLD = 6

/** Signs the CRL with the CA's P-256 key; returns the DER of the CertificateList. */
export async function signCrl(content: CrlContent, key: CryptoKey): Promise<Uint8Array<ArrayBuffer>> {
  const revoked = content.entries.map((e) => seq(
    integer(hexBytes(e.serial)),
    time(e.revokedAt),
    ...(e.hold ? [seq(seq(oid(REASON_CODE), octets(tlv(0x0a, Uint8Array.of(CERTIFICATE_HOLD)))))] : []),
  ))
  const tbs = seq(
    integer(Uint8Array.of(1)), // v2: the CRL carries extensions
    ECDSA_SHA256,
    content.issuer,
    time(content.thisUpdate),
    time(content.nextUpdate),
    // §5.1.2.6: when no certificate is revoked the list is absent, not empty.
    ...(revoked.length > 0 ? [seq(...revoked)] : []),
    tlv(0xa0, seq(...content.extensions)),
  )
  const p1363 = new Uint8Array(await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key as webcrypto.CryptoKey, tbs))
  // WebCrypto returns r || s; X.509 wants ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279 §2.2.3).
  const half = p1363.length / 2
  const signature = seq(integer(p1363.subarray(0, half)), integer(p1363.subarray(half)))
  return seq(tbs, ECDSA_SHA256, tlv(0x03, concat([Uint8Array.of(0), signature])))
}

function tlv(tag: number, content: Uint8Array): Uint8Array<ArrayBuffer> {
  const n = content.length
  if (n >= 0x1000000) throw new RangeError('a CRL of 16 MiB or more is not one this CA signs')
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]
  const out = new Uint8Array(1 + length.length + n)
  out[0] = tag
  out.set(length, 1)
  out.set(content, 1 + length.length)
  return out
}

function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

function seq(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return tlv(0x30, concat(parts))
}

function octets(content: Uint8Array): Uint8Array {
  return tlv(0x04, content)
}

/** A non-negative INTEGER from big-endian bytes: minimal, with a leading zero byte when the top bit is set. */
function integer(bytes: Uint8Array): Uint8Array {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const trimmed = bytes.subarray(start)
  return tlv(0x02, trimmed.length === 0 ? Uint8Array.of(0) : trimmed[0]! >= 0x80 ? concat([Uint8Array.of(0), trimmed]) : trimmed)
}

function hexBytes(hex: string): Uint8Array {
  if (!/^[0-9a-f]+$/i.test(hex)) throw new TypeError(`serial ${hex.slice(0, 40)} is not hex`)
  return Uint8Array.from(Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex'))
}

function oid(dotted: string): Uint8Array {
  const [a, b, ...rest] = dotted.split('.').map(Number)
  const out = [a! * 40 + b!]
  for (const arc of rest) {
    const base128 = [arc & 0x7f]
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift((v & 0x7f) | 0x80)
    out.push(...base128)
  }
  return tlv(0x06, Uint8Array.from(out))
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, in seconds, always Z. */
function time(epochSeconds: number): Uint8Array {
  const iso = new Date(epochSeconds * 1000).toISOString() // 2026-11-30T21:56:18.000Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') // 20261130215618
  const year = Number(iso.slice(0, 4))
  return year < 2050
    ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'ascii'))
    : tlv(0x18, Buffer.from(`${digits}Z`, 'ascii'))
}
