import { systemClock, type Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import { IamDiscovery } from './discovery.ts'
import type { IamConfig } from './iam_config.ts'
import { createIamFetch, type IamFetch } from './iam_fetch.ts'
import { IamTokenExchanger } from './outbound_exchange.ts'
import { MemoryRefreshTokenStore, type RefreshTokenStore } from './refresh_token_store.ts'
import { IamSubjectTokenVerifier } from './verify_subject_token.ts'

/** The IAM adapter as the composition root wires it. */
export interface IamAdapter {
  /** Inbound: SubjectTokenVerifier for POST /token. */
  verifier: IamSubjectTokenVerifier
  /** Outbound: token exchange and refresh at IAM as the broker's own client. */
  exchanger: IamTokenExchanger
  discovery: IamDiscovery
  refreshTokens: RefreshTokenStore
  /** The HTTP client every IAM call goes through (diagnostics reuse it). */
  fetch: IamFetch
  /** Stops cache timers and ends the IAM calls still waiting (the broker is stopping). */
  close(): void
}

export interface IamAdapterDeps {
  log: Logger
  clock?: Clock
  /** Default: undici with timeouts (production). Tests pass `globalThis.fetch` so msw sees the calls. */
  fetch?: IamFetch
  /** Wraps the fetch (given or default) that every IAM call goes through: metrics time and count them there. */
  wrapFetch?: (fetch: IamFetch) => IamFetch
  /** Default: in memory (lost on restart; persistent storage is a later issue). */
  refreshTokens?: RefreshTokenStore
  /** Reads secret files; default refuses group/other-readable files. */
  readFile?: (path: string) => Buffer
}

/**
 * Builds the IAM adapter from the `iam:` config section. Loads client credentials now (a bad secret or
 * key file is an OperatorError at start-up) but does not contact IAM: discovery happens on first use,
 * so the broker starts, and answers 503 for IAM-backed requests, while IAM is down.
 */
export async function createIamAdapter(iam: IamConfig, deps: IamAdapterDeps): Promise<IamAdapter> {
  const clock = deps.clock ?? systemClock
  const given = deps.fetch ?? createIamFetch({ timeoutSeconds: Math.max(iam.timeout_seconds, iam.jwks_timeout_seconds) })
  // Once the broker stops, nobody waits for an IAM answer: the listener's grace has already ended the
  // requests it was for. A call left waiting would hold the process (undici's socket) until IAM answered or
  // timeout_seconds (up to 120 s) ran out, after serve said it had stopped.
  const stopping = new AbortController()
  const base: IamFetch = (url, init) => given(url, { ...init, signal: init.signal ? AbortSignal.any([init.signal, stopping.signal]) : stopping.signal })
  const fetch = deps.wrapFetch ? deps.wrapFetch(base) : base
  const discovery = await IamDiscovery.create(iam, { fetch, clock, log: deps.log, ...(deps.readFile ? { readFile: deps.readFile } : {}) })
  const refreshTokens = deps.refreshTokens ?? new MemoryRefreshTokenStore()
  const verifier = new IamSubjectTokenVerifier(iam, { discovery, fetch, clock, log: deps.log })
  const exchanger = new IamTokenExchanger({ discovery, store: refreshTokens, clock, log: deps.log })
  const close = () => {
    verifier.close()
    stopping.abort(new Error('the broker is stopping'))
  }
  return { verifier, exchanger, discovery, refreshTokens, fetch, close }
}
