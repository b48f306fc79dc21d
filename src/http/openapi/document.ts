import { z } from 'zod'
import { ADMIN_REALM, CALLER_REALM } from '../oauth_error_response.ts'
import { AuditPage, BrokerMetadata, Jwks, OAuthError, Readiness, Revocation, TokenExchangeResponse } from './response_schemas.ts'
import { allowHeader, CACHE_CONTROL_NO_STORE, malformedBearerChallenge, NO_STORE_HEADERS, oauthErrorHeaders } from './headers.ts'
import { allowedMethods } from '../method_table.ts'
import type { HeaderSpec, Mount, ResponseSpec, RouteSpec } from './route_spec.ts'

type Json = Record<string, unknown>

/**
 * Schemas shown once under components.schemas and referenced by name wherever a route uses the very
 * same object. Everything else is inlined where it is used.
 */
const COMPONENTS: Record<string, z.ZodType> = { OAuthError, TokenExchangeResponse, Jwks, BrokerMetadata, Readiness, AuditPage, Revocation }
const NAME_OF = new Map<z.ZodType, string>(Object.entries(COMPONENTS).map(([name, schema]) => [schema, name]))

/** The path item extension that documents every method a path does not answer (405), which OpenAPI has no method for. */
export const OTHER_METHODS_EXTENSION = 'x-other-methods'

export interface OpenApiOptions {
  issuer: string
  version: string
  /** The parts createApp mounted; routes of the others are left out, so the document lists only what answers. */
  mounted: ReadonlySet<Mount>
}

/**
 * Builds the OpenAPI 3.1 document from the route registry. Request parameters and bodies are the zod
 * schemas the routes validate with, converted with zod's own JSON Schema (2020-12, the dialect of
 * OpenAPI 3.1) as the input side; responses are converted as the output side.
 * @see https://spec.openapis.org/oas/v3.1.0
 */
export function buildOpenApiDocument(routes: readonly RouteSpec[], options: OpenApiOptions): Json {
  const paths: Record<string, Json> = {}
  const served = routes.filter((r) => options.mounted.has(r.mount))
  for (const route of served) (paths[route.path] ??= {})[route.method] = operation(route)
  for (const [path, item] of Object.entries(paths)) item[OTHER_METHODS_EXTENSION] = otherMethods(path, served.filter((r) => r.path === path))
  return {
    openapi: '3.1.0',
    info: {
      title: 'condor-token-broker',
      version: options.version,
      description: 'Exchanges INDIGO IAM access tokens for HTCondor IDTOKENs and SciTokens (RFC 8693), with policies, a hash-chained audit log and revocation. Every error is an OAuth error object (RFC 6749 §5.2).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: options.issuer.replace(/\/$/, '') }],
    tags: [
      { name: 'token', description: 'The token endpoint.' },
      { name: 'discovery', description: 'What verifiers read: metadata and public keys.' },
      { name: 'admin', description: 'The admin API: bearer token of the bootstrap admin or of an IAM identity the policy grants admin.' },
      { name: 'operations', description: 'Probes and this document.' },
    ],
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(COMPONENTS).map(([name, schema]) => [name, toJsonSchema(schema, 'output')])),
      securitySchemes: {
        adminBearer: {
          type: 'http', scheme: 'bearer',
          description: `RFC 6750 bearer token, realm "${ADMIN_REALM}": the bootstrap admin token, or an IAM access token whose policy grants the admin role.`,
        },
        iamBearer: {
          type: 'http', scheme: 'bearer',
          description: `RFC 6750 bearer token, realm "${CALLER_REALM}": the caller's own IAM access token, admitted by a policy grant (no admin role needed).`,
        },
        creddBearer: {
          type: 'http', scheme: 'bearer',
          description: `RFC 6750 bearer token, realm "${CALLER_REALM}": the access point credd's IDTOKEN, issued by this broker.`,
        },
      },
    },
  }
}

function operation(route: RouteSpec): Json {
  const parameters = [...parametersOf(route.params, 'path'), ...parametersOf(route.query, 'query')]
  const responses: Record<string, Json> = {}
  for (const [status, spec] of Object.entries(route.responses) as Array<[string, ResponseSpec]>) responses[status] = response(spec, 'output')
  for (const [status, spec] of Object.entries(errorsOf(route)) as Array<[string, string | ResponseSpec]>) {
    const headers = { ...oauthErrorHeaders(Number(status), undefined, realmsOf(route)), ...(status === '400' && takesBearer(route) ? { 'WWW-Authenticate': malformedBearerChallenge(realmsOf(route)) } : {}) }
    responses[status] = response(typeof spec === 'string' ? { description: spec, content: { 'application/json': OAuthError }, headers } : spec, 'output')
  }
  responses['500'] ??= response({ description: 'server_error: details go to the log, never to the client.', content: { 'application/json': OAuthError }, headers: NO_STORE_HEADERS }, 'output')
  return {
    operationId: route.operationId,
    summary: route.summary,
    ...(route.description ? { description: route.description } : {}),
    tags: route.tags,
    security: route.security ? [{ [SECURITY_SCHEME[route.security]]: [] }] : [],
    ...(route.getMints ? { 'x-get-mints': true } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(route.body ? {
      requestBody: {
        required: route.body.required,
        content: { [route.body.contentType]: { schema: schemaRef(route.body.schema, 'input') } },
      },
    } : {}),
    responses,
  }
}

/**
 * Every other method at a path: 405 with Allow (middleware/method_guard.ts), before any authentication;
 * for a console page, the console's HTML page. HEAD is one of them where the GET mints a token.
 */
function otherMethods(path: string, own: readonly RouteSpec[]): Json {
  const allow = allowedMethods(own.map((r) => r.method), { getMints: own.some((r) => r.getMints) })
  const console = own.some((r) => r.mount === 'console')
  const refusal: ResponseSpec = console
    ? { description: 'A page saying which methods this page answers.', content: { 'text/html': z.string() }, headers: { 'Cache-Control': CACHE_CONTROL_NO_STORE, Allow: allowHeader(allow) } }
    : { description: `invalid_request, with Allow: ${allow.join(', ')}.`, content: { 'application/json': OAuthError }, headers: oauthErrorHeaders(405, allow) }
  return operation({
    method: 'get', path, mount: own[0]!.mount, operationId: `${own[0]!.operationId}OtherMethods`, tags: own[0]!.tags,
    summary: `Any method at ${path} but ${allow.join(', ')}`,
    ...(own[0]!.params ? { params: own[0]!.params } : {}),
    responses: {}, errors: { 405: refusal },
  })
}

const takesBearer = (route: RouteSpec) => route.security !== undefined || route.realms !== undefined

const MALFORMED_BEARER = 'an Authorization header in the Bearer scheme without exactly one token (RFC 6750 §3.1), with WWW-Authenticate: Bearer error="invalid_request"'

/** A route's errors, with the malformed bearer's 400 (bearer_token.ts) on every route that reads a bearer token. */
function errorsOf(route: RouteSpec): RouteSpec['errors'] {
  if (!takesBearer(route)) return route.errors
  const own = route.errors[400]
  if (own !== undefined && typeof own !== 'string') return route.errors
  return { ...route.errors, 400: own === undefined ? `invalid_request: ${MALFORMED_BEARER}.` : `${own} Also invalid_request for ${MALFORMED_BEARER}.` }
}

const SECURITY_SCHEME = { admin: 'adminBearer', iam: 'iamBearer', credd: 'creddBearer' } as const

/** The realms a route's 401 names: as oauth_error_response.ts chooses them, by the token the route takes. */
function realmsOf(route: RouteSpec): readonly string[] {
  return route.realms ?? [route.security === 'admin' ? ADMIN_REALM : CALLER_REALM]
}

function response(spec: ResponseSpec, io: 'input' | 'output'): Json {
  return {
    description: spec.description,
    ...(spec.headers ? { headers: Object.fromEntries(Object.entries(spec.headers).map(([name, h]) => [name, headerObject(h)])) } : {}),
    ...(spec.content ? { content: Object.fromEntries(Object.entries(spec.content).map(([type, schema]) => [type, { schema: schemaRef(schema, io) }])) } : {}),
  }
}

function headerObject(h: HeaderSpec): Json {
  return { description: h.description, schema: h.schema }
}

/** One OpenAPI parameter per property of a zod object, required as the schema says. */
function parametersOf(schema: z.ZodObject | undefined, where: 'path' | 'query'): Json[] {
  if (!schema) return []
  const js = toJsonSchema(schema, 'input') as { properties?: Record<string, Json>; required?: string[] }
  return Object.entries(js.properties ?? {}).map(([name, property]) => {
    const { description, ...rest } = property
    return {
      name, in: where,
      // OpenAPI 3.1 §4.8.12.1: a path parameter is always required.
      required: where === 'path' || (js.required ?? []).includes(name),
      ...(typeof description === 'string' ? { description } : {}),
      schema: rest,
    }
  })
}

function schemaRef(schema: z.ZodType, io: 'input' | 'output'): Json {
  const name = NAME_OF.get(schema)
  return name ? { $ref: `#/components/schemas/${name}` } : toJsonSchema(schema, io)
}

/** zod's JSON Schema without the `$schema` member: inside an OpenAPI 3.1 document the dialect is implied. */
function toJsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Json
  return rest
}
