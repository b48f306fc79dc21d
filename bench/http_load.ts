import { Pool } from 'undici'

export interface LoadResult {
  requests: number
  errors: number
  seconds: number
  rps: number
  p50ms: number
  p99ms: number
  /** First non-2xx body seen, to explain errors. */
  firstError?: string
}

/**
 * Closed-loop load: `connections` workers, each sending the next request as soon as the previous
 * answer arrives, for `durationMs`. Latencies are measured per request. Loopback only.
 */
export async function load(options: {
  origin: string
  path: string
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  connections: number
  durationMs: number
  ca?: string | Buffer
}): Promise<LoadResult> {
  const url = new URL(options.origin)
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) throw new Error('load tests target loopback only')
  const pool = new Pool(options.origin, { connections: options.connections, pipelining: 1, ...(options.ca ? { connect: { ca: options.ca } } : {}) })
  const latencies: number[] = []
  let errors = 0
  let firstError: string | undefined
  const send = async () => {
    const t0 = performance.now()
    const res = await pool.request({ path: options.path, method: options.method ?? 'GET', headers: options.headers ?? {}, body: options.body ?? null })
    const text = await res.body.text()
    latencies.push(performance.now() - t0)
    if (res.statusCode >= 300) {
      errors++
      firstError ??= `${res.statusCode} ${text.slice(0, 200)}`
    }
  }
  // Warm-up: connections, JIT, the verified-subject cache.
  await Promise.all(Array.from({ length: options.connections * 4 }, send))
  latencies.length = 0
  errors = 0
  const start = performance.now()
  const end = start + options.durationMs
  await Promise.all(Array.from({ length: options.connections }, async () => {
    while (performance.now() < end) await send()
  }))
  const seconds = (performance.now() - start) / 1000
  await pool.close()
  latencies.sort((a, b) => a - b)
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN
  return {
    requests: latencies.length, errors, seconds, rps: Math.round(latencies.length / seconds),
    p50ms: Number(q(0.5).toFixed(2)), p99ms: Number(q(0.99).toFixed(2)), ...(firstError ? { firstError } : {}),
  }
}
