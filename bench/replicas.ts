import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GRANT_TYPE_TOKEN_EXCHANGE as TE, TOKEN_TYPE } from '../src/contract/token_exchange.ts'
import { freePort } from '../src/lib/free_port.ts'
import { findPostgresBin, startPostgres, type TestPostgres } from '../test/support/postgres.ts'
import { load, type LoadResult } from './http_load.ts'
import { runCli, startBroker, type BenchProcess } from './processes.ts'
import { iamToken, setUpIam } from './token_http.ts'
import { haveWrk, wrkLoad } from './wrk_load.ts'

export const REPLICAS_ROW = 'two replicas, one PostgreSQL: startd IDTOKEN'

export type ReplicasResult =
  | { skipped: string }
  | { error: string }
  | { rps: number; perReplica: LoadResult[]; p99ms: number; errors: number; verify: { ok: boolean; records: number | undefined; out: string } }

/**
 * Two `serve` processes on one throwaway PostgreSQL cluster (loopback), sharing signing keys and the
 * development IAM (its own process); the connections split evenly across them, both driven at once.
 * Aggregate throughput is the sum; then `audit verify` checks that both replicas' records form one chain.
 */
export async function twoReplicas(options: { connections: number; durationMs: number }): Promise<ReplicasResult> {
  try {
    findPostgresBin()
  } catch (err) {
    return { skipped: (err as Error).message }
  }
  const dir = mkdtempSync(join(tmpdir(), 'ctb-bench-pg-'))
  const started: BenchProcess[] = []
  let pg: TestPostgres | undefined
  try {
    pg = await startPostgres()
    const dsn = await pg.createDatabase('bench_replicas')
    const ports = [await freePort(), await freePort()]
    // One issuer for the pool (as behind a load balancer); the IAM mints for it.
    const setup = await setUpIam(dir, `https://localhost:${ports[0]}`)
    started.push(setup.iam)
    const store = { CTB_TLS_MODE: 'off', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
    // One after the other: the first creates the shared keys and the schema, the second finds them.
    for (const [i, port] of ports.entries()) started.push(await startBroker(setup.brokerEnv(port, store), join(dir, `broker${i}.log`), `replica ${i + 1}`))
    const robot = await iamToken(setup.iamOrigin, { grant_type: 'client_credentials', scope: 'wlcg' }, 'ctb-cloud-a-provisioner', 'ctb-cloud-a-provisioner-secret')
    const body = new URLSearchParams({ grant_type: TE, subject_token: robot, subject_token_type: TOKEN_TYPE.accessToken, role: 'startd', host: 'ep-17.cloud-a.example.org' }).toString()
    const useWrk = await haveWrk()
    const per = Math.max(1, Math.floor(options.connections / 2))
    const perReplica = await Promise.all(ports.map((port) => {
      const o = { origin: `http://127.0.0.1:${port}`, path: '/token', method: 'POST' as const, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body, connections: per, durationMs: options.durationMs }
      return useWrk ? wrkLoad(o) : load(o)
    }))
    const errors = perReplica.reduce((n, r) => n + r.errors, 0)
    if (perReplica.every((r) => r.requests - r.errors <= 0)) return { error: `no successful request${perReplica.find((r) => r.firstError)?.firstError ? `: ${perReplica.find((r) => r.firstError)!.firstError}` : ''}` }
    for (const p of started.splice(1).reverse()) await p.stop()
    const env = setup.brokerEnv(ports[0]!, store)
    const v = await runCli(['audit', 'verify'], env)
    const records = /(\d+) records?/.exec(v.out)?.[1]
    return {
      rps: perReplica.reduce((n, r) => n + r.rps, 0), perReplica, p99ms: Math.max(...perReplica.map((r) => r.p99ms)), errors,
      verify: { ok: v.code === 0, records: records === undefined ? undefined : Number(records), out: v.out.split('\n')[0] ?? '' },
    }
  } catch (err) {
    return { error: (err as Error).message.split('\n')[0]! }
  } finally {
    for (const p of started.reverse()) await p.stop()
    await pg?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
