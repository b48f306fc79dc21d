import { execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { freePort } from './peers.ts'

/**
 * A throwaway PostgreSQL server for interop tests: initdb into a temp dir, listen on 127.0.0.1 at a free
 * port, stop and delete it afterwards. As root the server runs as the `postgres` OS user (PostgreSQL refuses
 * to run as root). Missing binaries fail the test, naming the Debian package; they never skip it.
 */
export interface TestPostgres {
  /** DSN of the maintenance database `postgres`. */
  dsn: string
  port: number
  /** Creates a fresh database and returns its DSN. */
  createDatabase(name: string): Promise<string>
  /**
   * SIGSTOPs this server's postmaster, then every process it forked: a server that neither answers nor
   * fails (the kernel still accepts and acknowledges on its sockets). Only this server's own processes.
   */
  freeze(): void
  /** SIGCONTs what freeze() stopped; a no-op when nothing is frozen. stop() thaws first. */
  thaw(): void
  /** Stops the server (fast shutdown: its backends terminated), keeping its data, for start() to bring back. */
  halt(): void
  /** Starts a halted server again, on the same port with the same data. */
  start(): void
  stop(): Promise<void>
}

export function findPostgresBin(): string {
  const base = '/usr/lib/postgresql'
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : []
  for (const v of versions) if (existsSync(join(base, v, 'bin', 'initdb'))) return join(base, v, 'bin')
  throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: install the Debian package `postgresql` (apt-get install postgresql)')
}


export async function startPostgres(): Promise<TestPostgres> {
  const bin = findPostgresBin()
  const root = process.getuid?.() === 0
  const dir = mkdtempSync(join(tmpdir(), 'ctb-pg-'))
  const asPg = (cmd: string, args: string[]) => root ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const : [cmd, args] as const
  if (root) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
    chownSync(dir, uid, gid)
  }
  const data = join(dir, 'data')
  const run = (cmd: string, args: string[]) => {
    const [c, a] = asPg(join(bin, cmd), args)
    try {
      execFileSync(c, [...a], { stdio: 'pipe', timeout: 60_000 })
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string }
      const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000) : ''
      throw new Error(`${cmd} failed: ${e.stderr?.toString() ?? e.message}\n${log}`)
    }
  }
  run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'])
  let port = 0
  const start = () => run('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60', '-o',
    `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${dir} -c fsync=on -c max_connections=50`, 'start'])
  for (let attempt = 0; attempt < 5; attempt++) {
    port = await freePort()
    try {
      start()
      break
    } catch (err) {
      if (attempt === 4) throw err
    }
  }
  const dsn = `postgres://postgres@127.0.0.1:${port}/postgres`
  let stopped = false
  let frozen: number[] = []
  const thaw = () => {
    for (const pid of frozen) { try { process.kill(pid, 'SIGCONT') } catch { /* already gone */ } }
    frozen = []
  }
  return {
    dsn,
    port,
    async createDatabase(name: string) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new TypeError('database name must be a plain identifier')
      const c = new pg.Client({ connectionString: dsn })
      await c.connect()
      try { await c.query(`CREATE DATABASE ${name}`) } finally { await c.end() }
      return `postgres://postgres@127.0.0.1:${port}/${name}`
    },
    freeze() {
      // The postmaster first, so that it forks nothing new while its children are being stopped.
      const postmaster = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
      process.kill(postmaster, 'SIGSTOP')
      frozen.push(postmaster)
      for (const pid of childrenOf(postmaster)) {
        try { process.kill(pid, 'SIGSTOP'); frozen.push(pid) } catch { /* exited meanwhile */ }
      }
    },
    thaw,
    halt() {
      thaw()
      run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'])
    },
    start,
    async stop() {
      if (stopped) return
      stopped = true
      thaw()
      try { if (existsSync(join(data, 'postmaster.pid'))) run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']) } finally { rmSync(dir, { recursive: true, force: true }) }
    },
  }
}

/** The pids whose parent is `parent` (from /proc/<pid>/stat: the field after the parenthesised command). */
function childrenOf(parent: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try { stat = readFileSync(`/proc/${entry}/stat`, 'utf8') } catch { continue }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (ppid === parent) out.push(Number(entry))
  }
  return out
}
