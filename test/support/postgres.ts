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
  for (let attempt = 0; attempt < 5; attempt++) {
    port = await freePort()
    try {
      run('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60', '-o',
        `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${dir} -c fsync=on -c max_connections=50`, 'start'])
      break
    } catch (err) {
      if (attempt === 4) throw err
    }
  }
  const dsn = `postgres://postgres@127.0.0.1:${port}/postgres`
  let stopped = false
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
    async stop() {
      if (stopped) return
      stopped = true
      try { run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']) } finally { rmSync(dir, { recursive: true, force: true }) }
    },
  }
}
