import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { LoadResult } from './http_load.ts'

const run = promisify(execFile)

/** True when Debian's wrk is installed: a C load generator costs far less CPU than a Node client. */
export async function haveWrk(): Promise<boolean> {
  try {
    await run('wrk', ['--version'])
    return true
  } catch (err) {
    // wrk --version exits 1 after printing its banner.
    return typeof (err as { stdout?: string }).stdout === 'string' && (err as { stdout: string }).stdout.includes('wrk')
  }
}

/**
 * Same contract as `load()`, driven by wrk (one thread, `connections` connections); loopback only.
 * `script` replaces the generated Lua with its own (it sets the method, headers and body itself);
 * `warmupScript`, the warm-up run's: a script whose requests use something up (renewals, each of a token the
 * broker then holds as renewed) cannot run twice, since the measured run would start from what the warm-up
 * spent.
 */
export async function wrkLoad(options: { origin: string; path: string; method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string; connections: number; durationMs: number; script?: string; warmupScript?: string }): Promise<LoadResult> {
  const url = new URL(options.path, options.origin)
  if (!['127.0.0.1', 'localhost'].includes(url.hostname)) throw new Error('load tests target loopback only')
  const dir = mkdtempSync(join(tmpdir(), 'ctb-wrk-'))
  try {
    const lua = options.script ?? [
      `wrk.method = ${JSON.stringify(options.method ?? 'GET')}`,
      ...(options.body ? [`wrk.body = ${JSON.stringify(options.body)}`] : []),
      ...Object.entries(options.headers ?? {}).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
    ].join('\n')
    writeFileSync(join(dir, 'req.lua'), lua)
    writeFileSync(join(dir, 'warmup.lua'), options.warmupScript ?? lua)
    const seconds = Math.max(1, Math.round(options.durationMs / 1000))
    // A short warm-up run first (JIT, caches), as load() does.
    const t = '-t1'
    await run('wrk', [t, `-c${options.connections}`, '-d1s', '-s', join(dir, 'warmup.lua'), url.href], { timeout: 30_000 })
    const { stdout } = await run('wrk', [t, `-c${options.connections}`, `-d${seconds}s`, '--latency', '-s', join(dir, 'req.lua'), url.href], { timeout: (seconds + 30) * 1000 })
    const ms = (label: string) => {
      const m = new RegExp(`${label}%\\s+([\\d.]+)(us|ms|s)`).exec(stdout)
      if (!m) return NaN
      const v = Number(m[1])
      return Number((m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v).toFixed(2))
    }
    const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0)
    const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0) + Number(/Socket errors:.*?timeout (\d+)/.exec(stdout)?.[1] ?? 0)
    return { requests, errors, seconds, rps: Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? 0)), p50ms: ms('50'), p99ms: ms('99') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Lua for one wrk thread driving all connections, in which every pilot renews its own current token: the
 * tokens wait in a queue, a request takes the oldest, and each 200 answer puts its fresh token back. So a
 * token is in flight on at most one connection and each pilot's chain stays linear, as on a real node,
 * without a thread per connection (32 wrk threads on 2 cores cost the broker ~35 µs more per answer in
 * its socket write, waking a sleeping thread each time, which the exchange row did not pay).
 * A refused request, or one whose answer never reaches response(), loses its token. Should the queue run dry, a
 * request takes a never-presented token from `spares`, and only once those are gone the last fresh token:
 * the broker refuses a token presented after its successor was renewed with as reuse and revokes its pilot
 * (docs/pilots.md), so presenting one twice would turn every later request of that pilot into an error.
 */
export function renewalScript(path: string, form: (token: string) => string, tokens: readonly string[], spares: readonly string[] = []): string {
  const marker = 'TOKEN_HERE'
  const [before, after] = form(marker).split(marker)
  return [
    `local queue = { ${tokens.map((t) => JSON.stringify(t)).join(', ')} }`,
    `local spares = { ${spares.map((t) => JSON.stringify(t)).join(', ')} }`,
    'local first, last = 1, #queue',
    'local latest = queue[last]',
    `local before, after = ${JSON.stringify(before)}, ${JSON.stringify(after)}`,
    'local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }',
    'function request()',
    '  local token = latest',
    '  if first <= last then token = queue[first]; queue[first] = nil; first = first + 1',
    '  elseif #spares > 0 then token = table.remove(spares) end',
    `  return wrk.format("POST", ${JSON.stringify(path)}, headers, before .. token .. after)`,
    'end',
    'function response(status, headers, body)',
    '  if status == 200 then local t = body:match(\'"access_token":"([^"]+)"\'); if t then last = last + 1; queue[last] = t; latest = t end end',
    'end',
  ].join('\n')
}
