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
