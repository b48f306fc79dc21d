import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { createSecureContext } from 'node:tls'
import { OperatorError } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { isDevelopmentCertificate } from './dev_ca_name.ts'
import { readSecretFile } from '../lib/secure_file.ts'

/** `startsAt`: the new certificate starts within the skew allowed and is swapped in then (ISO time). */
export type TlsReloadResult = { ok: true; reloaded: boolean; startsAt?: string } | { ok: false; error: string }

/**
 * How far in the future a reloaded certificate may start and still be taken: the clocks of the CA that
 * issued it and of this host may differ by this much (Kerberos allows the same five minutes by default).
 * Such a certificate is swapped in when it starts; the one in force serves until then.
 */
export const TLS_START_SKEW_MS = 5 * 60_000

/** The swap still to come for a listener (keyed by the first of its servers); a later reload replaces it. */
const pendingSwaps = new WeakMap<object, NodeJS.Timeout>()

/**
 * The certificate and key, with the key refused when group or other may read it (as any secret file), and
 * the pair refused unless the key is the certificate's (the first certificate of the file: the leaf).
 *
 * The check is ours because OpenSSL's is partial: it keeps one certificate and one key per key type, so
 * createSecureContext rejects an ECDSA key under another ECDSA certificate but silently takes an RSA key
 * with an ECDSA certificate (a renewal that changed key type, the key file not yet replaced); every
 * handshake then fails. Refused here, start-up says so and a reload keeps the pair in force.
 */
export function readTlsFiles(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  let cert: Buffer
  try {
    cert = readFileSync(certFile)
  } catch (err) {
    throw new OperatorError('ETLS', `cannot read TLS certificate or key: ${(err as Error).message}`)
  }
  const key = readSecretFile(keyFile)
  let matches: boolean
  try {
    matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))
  } catch (err) {
    throw new OperatorError('ETLS', `cannot parse TLS certificate ${certFile} or key ${keyFile}: ${(err as Error).message.split('\n')[0]}`)
  }
  if (!matches) throw new OperatorError('ETLS', `TLS key ${keyFile} does not match the certificate in ${certFile}`)
  // A pair that belongs together may still be one OpenSSL will not serve (an RSA key below its security
  // level): said here, before serve creates anything, and before a reload, deferred or not, swaps it in.
  try {
    createSecureContext({ cert, key })
  } catch (err) {
    throw new OperatorError('ETLS', `TLS certificate ${certFile} and key ${keyFile} cannot be served: ${(err as Error).message.split('\n')[0]}`)
  }
  return { cert, key }
}

/**
 * New TLS connections get the certificate and key now on disk (a renewed certificate); connections
 * already open keep theirs. Anything unreadable or mismatched keeps the certificate in force.
 */
export function reloadTls(
  servers: Server[], files: { certFile: string; keyFile: string } | undefined, log: Logger, trigger: string,
  /** A public issuer: preflight refuses to start on the development CA's certificate, so a reload refuses it too. */
  options: { production?: boolean } = {},
): TlsReloadResult {
  if (!files) return { ok: true, reloaded: false }
  const { certFile, keyFile } = files
  // Whatever this reload decides, a swap still waiting from an earlier one is no longer what is on disk.
  const key = servers[0]
  if (key) {
    clearTimeout(pendingSwaps.get(key))
    pendingSwaps.delete(key)
  }
  try {
    // readTlsFiles checks that the key is the certificate's before anything is swapped.
    const pair = readTlsFiles(certFile, keyFile)
    // A reload is a renewal: a certificate past its end or before its start (an old copy put back, the
    // wrong file of a renewal directory) would have every client refuse the broker while the one in force
    // is still good. At start-up there is no good one to keep, so only a reload checks this.
    const leaf = new X509Certificate(pair.cert)
    // Swapped in, it would serve until a restart that then fails preflight on it.
    if (options.production && isDevelopmentCertificate(pair.cert)) {
      throw new OperatorError('ETLS', `the certificate in ${certFile} is a development certificate (issued by the condor-token-broker development CA); a broker with a public issuer needs one from a CA its clients trust`)
    }
    const now = Date.now()
    if (leaf.validToDate.getTime() <= now) throw new OperatorError('ETLS', `the certificate in ${certFile} expired on ${leaf.validToDate.toISOString()}`)
    const startsIn = leaf.validFromDate.getTime() - now
    if (startsIn > TLS_START_SKEW_MS) throw new OperatorError('ETLS', `the certificate in ${certFile} is not valid before ${leaf.validFromDate.toISOString()}`)
    // Which certificate, as `openssl x509 -noout -serial -enddate -fingerprint -sha256` names it: the admin
    // who renewed it checks the log for this one, not merely for some file having been read.
    const served = { serial: leaf.serialNumber, notAfter: leaf.validToDate.toISOString(), fingerprint256: leaf.fingerprint256 }
    const swap = () => {
      for (const server of servers) (server as unknown as HttpsServer).setSecureContext(pair)
      log.info('TLS certificate reloaded', { trigger, cert: certFile, ...served })
    }
    if (startsIn <= 0) {
      swap()
      return { ok: true, reloaded: true }
    }
    // Served now, it would be refused by every client whose clock agrees with ours until it starts.
    const startsAt = leaf.validFromDate.toISOString()
    log.info('TLS certificate starts in the future (clock skew with its CA); the certificate in force serves until then', { trigger, cert: certFile, startsAt, ...served })
    // OpenSSL's own refusals were met by readTlsFiles; should setSecureContext still throw, it must not
    // do so uncaught, from a timer, where it would end the process.
    const timer = setTimeout(() => {
      if (key) pendingSwaps.delete(key)
      try {
        swap()
      } catch (err) {
        log.error('TLS certificate reload refused; keeping the certificate in force', { trigger, cert: certFile, error: (err as Error).message })
      }
    }, startsIn)
    timer.unref()
    if (key) pendingSwaps.set(key, timer)
    return { ok: true, reloaded: false, startsAt }
  } catch (err) {
    const error = (err as Error).message
    log.error('TLS certificate reload refused; keeping the certificate in force', { trigger, cert: certFile, error })
    return { ok: false, error }
  }
}
