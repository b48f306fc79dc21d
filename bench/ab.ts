/**
 * Interleaved A/B of two builds of the broker on one row, for deciding whether a change pays; not part of
 * `npm run bench`. The machine's speed drifts by a third within an hour (docs/performance.md), so the two
 * builds take turns, each run on a fresh data directory, and the CPU each thread of the broker spent per
 * request is read from /proc (what the machine's drift moves least).
 *
 *   npm run build && mkdir -p .ab && cp -r dist .ab/a    # before the change
 *   npm run build && cp -r dist .ab/b                    # after it
 *   node bench/ab.ts idtoken 8 3 .ab/a .ab/b
 *
 * The copies stay inside the checkout so that they find its node_modules (.ab/ is not committed).
 *
 * Rows: idtoken (startd exchange), scitoken (submit-user ES256), renewal (32 pilots renewing), healthz. Needs Debian's wrk.
 * AB_NODE_OPTIONS adds Node options to both (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof).
 */
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { GRANT_TYPE_TOKEN_EXCHANGE as TE, TOKEN_TYPE } from '../src/contract/token_exchange.ts'
import { freePort } from '../src/lib/free_port.ts'
import { brokerLaunch, spawnNode } from './processes.ts'
import { rssOf } from './rss.ts'
import { iamToken, redeemPilots, setUpIam } from './token_http.ts'
import { haveWrk, renewalScript, wrkLoad } from './wrk_load.ts'

const [row = 'idtoken', secondsArg = '8', pairsArg = '3', ...dists] = process.argv.slice(2)
if (!['idtoken', 'scitoken', 'renewal', 'healthz'].includes(row) || dists.length === 0) {
  console.error('usage: node bench/ab.ts idtoken|scitoken|renewal|healthz SECONDS PAIRS DIST_A [DIST_B ...]')
  process.exit(2)
}
if (!(await haveWrk())) {
  console.error('bench/ab.ts needs wrk (apt-get install wrk)')
  process.exit(2)
}

/** Microseconds of CPU per thread name (main, the SQLite writer, GC helpers...) from /proc/PID/task. */
function threadCpu(pid: number): Map<string, number> {
  const ticks = new Map<string, number>()
  const seen = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`).sort((a, b) => Number(a) - Number(b))) {
    try {
      // Worker threads share a name: the writer starts before the checkpointer, so number them in tid order.
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
      const name = comm === 'WorkerThread' ? `${comm}${seen.set(comm, (seen.get(comm) ?? 0) + 1).get(comm)}` : comm.replace(/\d+$/, '#')
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks.set(name, (ticks.get(name) ?? 0) + Number(f[11]) + Number(f[12]))
    } catch { /* the thread ended between the listing and the read */ }
  }
  // Linux reports times in USER_HZ, 100 per second.
  return new Map([...ticks].map(([k, v]) => [k, v * 10_000]))
}

const dir = mkdtempSync(join(tmpdir(), 'ctb-ab-'))
const seconds = Number(secondsArg)
const results = new Map<string, string[]>()
try {
  const port = await freePort()
  const setup = await setUpIam(dir, `https://localhost:${port}`)
  try {
    const robot = await iamToken(setup.iamOrigin, { grant_type: 'client_credentials', scope: 'wlcg' }, 'ctb-cloud-a-provisioner', 'ctb-cloud-a-provisioner-secret')
    const alice = await iamToken(setup.iamOrigin, { grant_type: 'password', username: 'alice', password: 'alice-password', scope: 'openid profile wlcg wlcg.groups' }, 'dev-cli', 'dev-cli-secret')
    const form = (subject: string, extra: Record<string, string>) => new URLSearchParams({ grant_type: TE, subject_token: subject, subject_token_type: TOKEN_TYPE.accessToken, ...extra }).toString()
    const request = row === 'healthz'
      ? { path: '/healthz' }
      : {
          path: '/token', method: 'POST' as const, headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: row === 'idtoken'
            ? form(robot, { role: 'startd', host: 'ep-17.cloud-a.example.org' })
            : form(alice, { role: 'submit-user', requested_token_type: TOKEN_TYPE.jwt, audience: 'condor://ap1.cloud-a.example.org:9618', scope: 'compute.read' }),
        }
    const launch = brokerLaunch()
    const extra = (process.env.AB_NODE_OPTIONS ?? '').split(' ').filter((o) => o.length > 0)
    for (let pair = 0; pair < Number(pairsArg); pair++) {
      for (const dist of dists) {
        rmSync(join(dir, 'data'), { recursive: true, force: true })
        const broker = await spawnNode([...launch.nodeOptions, ...extra, join(resolve(dist), 'cli/main.js'), 'serve'], {
          env: { ...launch.env, ...setup.brokerEnv(port, { CTB_TLS_MODE: 'off' }) }, logFile: join(dir, 'broker.log'), ready: /serving at/, what: dist,
        })
        try {
          await sleep(1500)
          const before = threadCpu(broker.pid)
          const origin = `http://127.0.0.1:${port}`
          // Renewal: each of 32 pilots redeems its node's slot, then renews whatever its last answer carried.
          // The warm-up gets pilots of its own and each run spares: no token may be presented twice
          // (renewalScript), or the broker revokes its pilot as a forked chain.
          const renewForm = (t: string) => new URLSearchParams({ grant_type: TE, subject_token: t, subject_token_type: TOKEN_TYPE.idtoken }).toString()
          const pilots = () => redeemPilots(origin, undefined, setup.iamOrigin, 32)
          const renewal = row === 'renewal'
            ? { path: '/token', script: renewalScript('/token', renewForm, await pilots(), await pilots()), warmupScript: renewalScript('/token', renewForm, await pilots(), await pilots()) }
            : undefined
          const r = await wrkLoad({ origin, connections: 32, durationMs: seconds * 1000, ...(renewal ?? request) })
          const after = threadCpu(broker.pid)
          // wrkLoad's one-second warm-up ran between the two readings too.
          const served = r.requests + r.rps
          const perThread = [...after].map(([name, us]) => [name, Math.round((us - (before.get(name) ?? 0)) / served)] as const)
            .filter(([, us]) => us > 0).sort((a, b) => b[1] - a[1]).map(([n, us]) => `${n} ${us}`).join(', ')
          const line = `${r.rps} req/s p50 ${r.p50ms} p99 ${r.p99ms} err ${r.errors} | µs/req: ${perThread} | peak ${rssOf(broker.pid).hwmMb} MB`
          console.log(`${dist}: ${line}`)
          results.set(dist, [...(results.get(dist) ?? []), line])
        } finally {
          await broker.stop()
        }
      }
    }
  } finally {
    await setup.iam.stop()
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
for (const [dist, lines] of results) console.log(`\n${dist}\n  ${lines.join('\n  ')}`)
