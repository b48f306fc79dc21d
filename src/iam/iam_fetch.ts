import { Agent, fetch as undiciFetch } from 'undici'

/**
 * The one HTTP client the IAM adapter uses, injected everywhere (openid-client's and jose's `customFetch`).
 * Tests pass `globalThis.fetch`, which msw intercepts; msw cannot see the npm undici's own fetch
 * (docs/iam-and-wlcg.md §4.2, mswjs/msw#2165).
 */
export type IamFetch = (url: string, init: RequestInit) => Promise<Response>

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
    return res as unknown as Response
  }
}

