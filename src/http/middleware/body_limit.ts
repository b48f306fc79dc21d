import type { Context, MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { InvalidRequest } from '../../errors.ts'

/**
 * Stops reading a request body at `maxBytes`, whether it declares its length or streams it chunked: a
 * route that reads the body before (or without) authenticating its caller must not buffer whatever a
 * client sends. Beyond the limit: `tooLarge`, by default the API's invalid_request (OAuth error JSON).
 */
export function limitBody(maxBytes: number, tooLarge?: (c: Context) => Response): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: tooLarge ?? (() => { throw new InvalidRequest(`body is larger than ${maxBytes} bytes`) }),
  })
}
