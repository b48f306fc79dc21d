/**
 * Why a request to IAM failed, in the words an operator acts on. `fetch failed` says nothing: the reason
 * sits in the error's `cause` chain (undici and Node put the system or TLS code there; openid-client and
 * jose wrap the fetch error once more). Categories: dns (the name does not resolve), tls (the server's
 * certificate is not trusted), refused (nothing listens), timeout (no answer in time, or aborted);
 * anything else is reported by its own code.
 */
export type IamFailureCause = 'dns' | 'tls' | 'refused' | 'timeout' | (string & {})
/** The named causes: IAM could not be reached, or did not answer in time (any other cause is a bare code). */
export const TRANSPORT_CAUSES: ReadonlySet<string> = new Set(['dns', 'tls', 'refused', 'timeout'])

export interface IamFailure {
  cause: IamFailureCause
  /** The most specific code found (ENOTFOUND, DEPTH_ZERO_SELF_SIGNED_CERT, …), when there is one. */
  code?: string
  /** The innermost message, e.g. `getaddrinfo ENOTFOUND iam.invalid`; never holds a token. */
  detail: string
}

const DNS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL', 'EAI_NODATA'])
const TLS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE', 'CERT_REVOKED', 'CERT_UNTRUSTED',
  'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'INVALID_CA', 'CERT_CHAIN_TOO_LONG', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
])
const TIMEOUT = new Set([
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT',
  'ERR_JWKS_TIMEOUT', 'OAUTH_TIMEOUT', 'OAUTH_ABORT', 'ABORT_ERR',
])
const TIMEOUT_NAMES = new Set(['TimeoutError', 'AbortError'])

/** Classifies a failed IAM request by the innermost error that carries a code or a telling name. */
export function classifyIamFailure(err: unknown): IamFailure {
  const chain = causeChain(err)
  // Innermost first: the system error explains the wrapper, not the other way round.
  for (const e of [...chain].reverse()) {
    const code = typeof e.code === 'string' ? e.code : undefined
    if (code !== undefined) {
      if (DNS.has(code)) return { cause: 'dns', code, detail: e.message }
      if (TLS.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return { cause: 'tls', code, detail: e.message }
      if (code === 'ECONNREFUSED') return { cause: 'refused', code, detail: e.message }
      if (TIMEOUT.has(code)) return { cause: 'timeout', code, detail: e.message }
    }
    if (TIMEOUT_NAMES.has(e.name)) return { cause: 'timeout', detail: e.message }
  }
  const coded = [...chain].reverse().find((e) => typeof e.code === 'string' && e.code !== '')
  const inner = chain.at(-1)
  if (coded) return { cause: String(coded.code), code: String(coded.code), detail: coded.message }
  return { cause: inner ? inner.name : 'error', detail: inner ? inner.message : String(err) }
}

interface ErrorLike { name: string; message: string; code?: unknown }

/** The error and its causes, outermost first; AggregateError (several addresses tried) adds its members. Bounded. */
function causeChain(err: unknown): ErrorLike[] {
  const out: ErrorLike[] = []
  let e: unknown = err
  for (let depth = 0; depth < 8 && isErrorLike(e); depth++) {
    const cur = e as ErrorLike & { cause?: unknown; errors?: unknown }
    out.push(cur)
    if (Array.isArray(cur.errors)) out.push(...cur.errors.slice(0, 4).filter(isErrorLike))
    e = cur.cause
  }
  return out
}

function isErrorLike(e: unknown): e is ErrorLike {
  return typeof e === 'object' && e !== null && typeof (e as ErrorLike).name === 'string' && typeof (e as ErrorLike).message === 'string'
}
