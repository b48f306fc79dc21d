import type { z } from 'zod'

/**
 * Which part of createApp mounts a route: always, with a token exchange, with the admin API, with a policy
 * source, with metrics, with the pool CA (and the admin API, for revoking certificates), with the console, with job credentials.
 */
export type Mount = 'core' | 'exchange' | 'admin' | 'policy' | 'metrics' | 'certificates' | 'certificates-admin' | 'console' | 'credentials'

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete'

/** Error statuses a route documents; the API's answer the one OAuth error shape, the console's are HTML pages. */
export type ErrorStatus = 400 | 401 | 403 | 404 | 405 | 413 | 429 | 503

/** One response header (OpenAPI 3.1 §4.8.21): what it says, and a JSON Schema of its value. */
export interface HeaderSpec {
  description: string
  schema: Record<string, unknown>
}

export interface ResponseSpec {
  description: string
  /** Media type → body schema; absent: no body described. */
  content?: Record<string, z.ZodType>
  /** Headers the answer carries (Retry-After, WWW-Authenticate, Cache-Control, …). */
  headers?: Record<string, HeaderSpec>
}

/** A JSON body. */
export function json(schema: z.ZodType): Record<string, z.ZodType> {
  return { 'application/json': schema }
}

/**
 * One route as the OpenAPI document shows it. `query`, `params` and `body.schema` are the zod schemas
 * that validate the request in the route itself, never copies.
 */
export interface RouteSpec {
  /** Every other method at this path is answered 405 by middleware/method_guard.ts, documented by document.ts. */
  method: HttpMethod
  /** OpenAPI path template: `/v1/revocations/{id}`. */
  path: string
  mount: Mount
  operationId: string
  summary: string
  description?: string
  tags: string[]
  /**
   * The RFC 6750 bearer token the route takes: `admin` the admin API's, `iam` a user's IAM access token,
   * `credd` the access point credd's IDTOKEN issued by this broker. It also decides the realm of the 401's
   * challenge (oauth_error_response.ts), unless `realms` says otherwise.
   */
  security?: 'admin' | 'iam' | 'credd'
  /** The realms a 401 may name, where `security` cannot say (GET /metrics: open, or behind either token). */
  realms?: readonly string[]
  params?: z.ZodObject
  query?: z.ZodObject
  body?: { contentType: string; schema: z.ZodType; required: boolean }
  /**
   * A GET whose answer is a token minted (or refreshed at IAM) and audited: the path takes no HEAD (405),
   * shown as `x-get-mints: true` on the operation and in the Allow of x-other-methods (method_table.ts).
   */
  getMints?: true
  responses: Partial<Record<200 | 201 | 303, ResponseSpec>>
  /**
   * A description: the OAuth error object with the headers oauthErrorReply adds for that status (headers.ts
   * oauthErrorHeaders); a ResponseSpec: a route's own error body (/readyz, the console's pages), headers as given.
   */
  errors: Partial<Record<ErrorStatus, string | ResponseSpec>>
}
