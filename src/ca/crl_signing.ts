// @peculiar/x509 2.x resolves its ASN.1 services through tsyringe, which needs a Reflect polyfill loaded first.
import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import { AsnConvert, AsnSerializer, OctetString } from '@peculiar/asn1-schema'
import { CertificateList, CRLReason, CRLReasons, Extension, id_ce_cRLReasons, Name, RevokedCertificate, TBSCertList, Time, Version } from '@peculiar/asn1-x509'
import * as x509 from '@peculiar/x509'
import * as asn1js from 'asn1js'

/**
 * Signs the pool CA's CRL, built from the ASN.1 classes @peculiar/x509 itself is made of
 * (@peculiar/asn1-x509, encoded by @peculiar/asn1-schema) rather than with its X509CrlGenerator, which
 * looks for each new entry's serial among every entry before it: a cost that grows with the square of
 * the entries, seconds of event loop for 10,000. Our callers list each serial once.
 * @see docs/pool-ca.md
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

/** The CA's key is P-256; the library names this ecdsa-with-SHA256 and formats its signatures. */
const SIGNING = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const

/** Signs the CRL with the CA's P-256 key; returns the DER of the CertificateList. */
export async function signCrl(content: CrlContent, key: CryptoKey): Promise<Uint8Array<ArrayBuffer>> {
  const hold = [new Extension({
    extnID: id_ce_cRLReasons,
    critical: false,
    extnValue: new OctetString(AsnConvert.serialize(new CRLReason(CRLReasons.certificateHold))),
  })]
  const algorithm = new x509.AlgorithmProvider().toAsnAlgorithm(SIGNING)
  const tbs = new TBSCertList({
    version: Version.v2, // the CRL carries extensions
    signature: algorithm,
    issuer: AsnConvert.parse(content.issuer, Name),
    thisUpdate: new Time(content.thisUpdate * 1000),
    nextUpdate: new Time(content.nextUpdate * 1000),
    crlExtensions: content.extensions.map((e) => AsnConvert.parse(e, Extension)),
  })
  // RFC 5280 §5.1.2.6: when no certificate is revoked the list is absent, not empty.
  if (content.entries.length > 0) {
    tbs.revokedCertificates = content.entries.map((e) => new RevokedCertificate({
      userCertificate: positiveInteger(e.serial),
      revocationDate: new Time(e.revokedAt * 1000),
      // §5.3: crlEntryExtensions is SIZE (1..MAX), so an entry without a reason has none at all.
      ...(e.hold ? { crlEntryExtensions: hold } : {}),
    }))
  }
  const signed = new EncodedTbsCertList(tbs)
  const signature = await webcrypto.subtle.sign(SIGNING, key as webcrypto.CryptoKey, signed.der)
  // WebCrypto returns r || s; X.509 wants ECDSA-Sig-Value (RFC 3279 §2.2.3), which the library's formatter writes.
  const asnSignature = new x509.AsnEcSignatureFormatter().toAsnSignature(SIGNING, signature)
  if (!asnSignature) throw new Error('the CRL signature could not be encoded')
  return new Uint8Array(AsnConvert.serialize(new CertificateList({ tbsCertList: signed, signatureAlgorithm: algorithm, signature: asnSignature })))
}

/**
 * A TBSCertList encoded once: `der` is what is signed, and the CertificateList's serializer takes the
 * same encoding back (asn1-schema asks an object with toASN for its ASN.1 instead of walking its schema).
 * Encoding the list of 10,000 entries a second time would double the cost of signing.
 */
class EncodedTbsCertList extends TBSCertList {
  readonly #asn: asn1js.Primitive
  readonly der: ArrayBuffer

  constructor(tbs: TBSCertList) {
    super(tbs)
    // asn1js writes a Primitive's contents as they are, where a Sequence would encode its elements again:
    // the contents asn1-schema encoded go under the TBSCertList's own tag (SEQUENCE, constructed, which
    // Primitive's constructor would clear).
    const asn = AsnSerializer.toASN(tbs)
    const { tagClass, tagNumber, isConstructed } = asn.idBlock
    this.#asn = new asn1js.Primitive({ idBlock: { tagClass, tagNumber }, valueHex: asn.valueBlock.toBER(false) })
    this.#asn.idBlock.isConstructed = isConstructed
    this.der = this.#asn.toBER(false)
  }

  toASN(): asn1js.Primitive {
    return this.#asn
  }

  fromASN(): this {
    throw new TypeError('an encoded TBSCertList is only written')
  }
}

/**
 * A hex serial as the contents of a non-negative INTEGER: minimal, a zero byte first when the top bit is
 * set (what X509CrlGenerator does to a serial). asn1js.Integer.fromBigInt gives the same bytes but costs
 * a fifth of the whole signing for 10,000 entries.
 */
function positiveInteger(hex: string): ArrayBuffer {
  if (!/^[0-9a-f]+$/i.test(hex)) throw new TypeError(`serial ${hex.slice(0, 40)} is not hex`)
  const bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex')
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const trimmed = bytes.subarray(start)
  return Uint8Array.from(trimmed[0]! >= 0x80 ? [0, ...trimmed] : trimmed).buffer
}
