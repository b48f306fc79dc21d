import { RequestError } from '@hono/node-server'
import { InvalidRequest } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { NO_STORE_HEADERS, oauthErrorReply, type OAuthErrorReply } from './oauth_error_response.ts'

/**
 * The hono Node adapter's errorHandler. The adapter refuses a request Node parsed but it cannot build a URL
 * for (the asterisk form `OPTIONS *`, a Host header that is no host, a backslash in the path) with an
 * empty 400, and a failure of the app's promise with an empty 500: both get the API's error shape here, as
 * requests Node's parser refuses do (client_error.ts). Never reached by a request the app answered.
 */
/** Why a request whose target or Host cannot make a URL is refused. */
export function unreadableTarget(): InvalidRequest {
  return new InvalidRequest('the request target or Host header cannot be read as a URL of this server')
}

export function adapterErrorAnswer(log: Logger): (err: unknown) => Response {
  return (err) => {
    let reply: Pick<OAuthErrorReply, 'status' | 'body' | 'headers'>
    try {
      reply = oauthErrorReply(err instanceof RequestError ? unreadableTarget() : err, log, undefined)
    } catch {
      // The logger threw while the fault was reported (the app's onError met the same): a throw from here
      // would get the adapter's own bare 500, not the API's shape. Nothing more can be logged.
      reply = { status: 500, body: { error: 'server_error' }, headers: { ...NO_STORE_HEADERS } }
    }
    return new Response(JSON.stringify(reply.body), { status: reply.status, headers: { ...reply.headers, 'Content-Type': 'application/json' } })
  }
}

/**
 * adapterErrorAnswer for the Vault-compatible listener, in Vault's shape (`{"errors": [...]}`), as its framing
 * refusals are (client_error.ts): the adapter's own empty 400 or 500 is no answer HTCondor's Vault credmon
 * can read. A refusal here is the request's, never "permission denied", on which the credmon would delete
 * the user's .top.
 */
export function vaultAdapterErrorAnswer(log: Logger, metrics?: { vaultRefused(reason: 'server_error'): void }): (err: unknown) => Response {
  return (err) => {
    const headers = { ...NO_STORE_HEADERS, 'Content-Type': 'application/json' }
    if (err instanceof RequestError) return new Response(JSON.stringify({ errors: [unreadableTarget().description] }), { status: 400, headers })
    // A fault the app's onError did not answer (a non-Error thrown, which hono hands to no onError, or the
    // onError's own throw): counted here as the app counts its own 500s (ctb_vault_refusals_total).
    try {
      metrics?.vaultRefused('server_error')
    } catch {
      // A count lost is no reason to answer otherwise.
    }
    try {
      log.error('unhandled error on the Vault-compatible listener', { err })
    } catch {
      // The logger itself threw: the answer below is all that can be given.
    }
    return new Response(JSON.stringify({ errors: ['internal error'] }), { status: 500, headers })
  }
}
