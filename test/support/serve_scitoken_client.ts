import { readFileSync } from 'node:fs'
import { expect } from 'vitest'
import { Agent, fetch as undiciFetch } from 'undici'
import { devIamUserToken } from '../../src/dev_iam/dev_iam_token.ts'
import { defaultDevIamConfig, type DevIamConfig } from '../../src/dev_iam/dev_iam_config.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

/**
 * A client of a `serve` process started on the development defaults (test/support/serve_process.ts): HTTPS
 * that trusts the given CA files, and alice's SciToken for ap1 by token exchange, as the key-reload tests need.
 */
export interface ServeSciTokenClient {
  tlsFetch: typeof fetch
  /** A WLCG SciToken for the development IAM's user alice; fails the test unless the broker answers 200. */
  sciToken(): Promise<string>
  /** The kids /jwks publishes now. */
  publishedKids(): Promise<string[]>
  close(): Promise<void>
}

export function serveSciTokenClient(base: string, iamPort: number, caFiles: string[]): ServeSciTokenClient {
  const agent = new Agent({ connect: { ca: caFiles.map((f) => readFileSync(f)), servername: 'localhost' } })
  const tlsFetch = ((url: string | URL | Request, init?: RequestInit) => undiciFetch(url as string, { ...init, dispatcher: agent } as never)) as unknown as typeof fetch
  const iam = { tokenEndpoint: `http://127.0.0.1:${iamPort}/token`, config: defaultDevIamConfig() as unknown as DevIamConfig }
  return {
    tlsFetch,
    async sciToken() {
      const { accessToken } = await devIamUserToken(iam, 'alice')
      const res = await tlsFetch(`${base}/token`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: accessToken,
          subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', requested_token_type: 'urn:ietf:params:oauth:token-type:jwt',
          role: 'submit-user', audience: 'condor://ap1.cloud-a.example.org:9618',
        }),
      })
      const body = await res.json() as { access_token: string }
      expect(res.status, JSON.stringify(body)).toBe(200)
      return body.access_token
    },
    async publishedKids() {
      return ((await (await tlsFetch(`${base}/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)
    },
    close: () => agent.close(),
  }
}

/** `[decision, reason]` of every `key.reloaded` record in a stopped broker's SQLite audit log. */
export async function keyReloadRecords(auditDb: string): Promise<Array<[string | undefined, string | undefined]>> {
  const store = new SqliteStore({ file: auditDb, writer: 'inline' })
  try {
    const page = await store.query({ limit: 10, type: 'key.reloaded' })
    return page.records.map((r) => [r.event.decision, r.event.reason])
  } finally {
    await store.close()
  }
}
