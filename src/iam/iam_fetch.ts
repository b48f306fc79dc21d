import { Agent, fetch as undiciFetch } from 'undici'

/**
 * The one HTTP client the IAM adapter uses, injected everywhere (openid-client's and jose's `customFetch`).
 * Tests pass `globalThis.fetch`, which msw intercepts; msw cannot see the npm undici's own fetch
 * (docs/iam-and-wlcg.md §4.2, mswjs/msw#2165).
 */
export type IamFetch = (url: string, init: RequestInit) => Promise<Response>

/**
 * The most the broker reads of one IAM answer. Discovery documents, key sets and token responses are a few
 * kilobytes; openid-client and jose buffer a whole body before parsing it, so without a bound a broken
 * IAM or proxy streaming megabytes within the deadline would be held in memory by every caller waiting.
 */
export const IAM_MAX_RESPONSE_BYTES = 1024 * 1024

/** Statuses whose Response may not carry a body (the Fetch standard's "null body status"). */
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304])

/**
 * Production fetch: undici with connect/header/body timeouts on its own dispatcher, so a half-open IAM
 * socket cannot hold a request past the bound even if a caller forgets its AbortSignal. Every call
 * additionally gets an overall deadline. Redirects are left to the callers (both libraries use `manual`).
 */
export function createIamFetch(options: { timeoutSeconds: number }): IamFetch {
  const ms = Math.ceil(options.timeoutSeconds * 1000)
  const dispatcher = new Agent({ connectTimeout: ms, headersTimeout: ms, bodyTimeout: ms, keepAliveTimeout: 30_000 })
  return async (url, init) => {
    const deadline = AbortSignal.timeout(ms)
    const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline
    // undici's RequestInit/Response are structurally the WHATWG ones; the casts only bridge the two type packages.
    const res = await undiciFetch(url, { ...(init as object), signal, dispatcher } as Parameters<typeof undiciFetch>[1])
    return capBody(res as unknown as Response, IAM_MAX_RESPONSE_BYTES, url)
  }
}

/**
 * The same answer, its body ending in an error once more than `max` bytes arrived (or at once when
 * Content-Length says so); cancelling the source closes the connection, so the rest is never read.
 * The error surfaces from the caller's `json()`/`text()` like any broken body: a 503, IAM unavailable.
 */
function capBody(res: Response, max: number, url: string): Response {
  if (res.body === null || NULL_BODY_STATUS.has(res.status)) return res
  const tooLarge = () => new RangeError(`IAM answer from ${url} is larger than ${max} bytes`)
  const declared = Number(res.headers.get('content-length') ?? NaN)
  const reader = res.body.getReader()
  let seen = 0
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (declared > max) { await reader.cancel().catch(() => {}); controller.error(tooLarge()); return }
      const { done, value } = await reader.read()
      if (done) { controller.close(); return }
      seen += value.byteLength
      if (seen > max) { await reader.cancel().catch(() => {}); controller.error(tooLarge()); return }
      controller.enqueue(value)
    },
    cancel(reason) { return reader.cancel(reason) },
  })
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers })
}

