import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { requireTool } from './peers.ts'

const SCITOKENS_PLUGIN = 'libXrdAccSciTokens-5.so'
/** Inside the private network namespace every port is free, so fixed ones keep the config readable. */
export const XROOTD_HTTPS_PORT = 8443
const XROOTD_ROOT_PORT = 1094

export interface RunningXrootd {
  /** `https://localhost:8443`, reachable only inside `netns`; also the audience XRootD accepts. */
  url: string
  /** The CA that signed XRootD's certificate. */
  caFile: string
  /** The `oss.localroot`: `/store/x` is `<dataDir>/store/x`. */
  dataDir: string
  /** Prefixes a command so it runs in XRootD's network namespace (only `lo`, XRootD and the issuer relay). */
  inNetns(command: string[]): string[]
  log(): string
  close(): Promise<void>
}

export interface XrootdOptions {
  /** The token issuer trusted under base path /store; its port is relayed into the namespace. */
  issuer: string
}

/**
 * A real xrootd serving HTTPS with the SciTokens authorization plugin, inside a network namespace with
 * only loopback up: xrootd 5.5 binds every interface, and this way nothing but the test can reach it.
 * The issuer (on the host's loopback) is relayed into the namespace through a unix socket, so XRootD's
 * scitokens-cpp fetches discovery and JWKS over HTTPS at the issuer's exact URL. It checks the issuer's
 * certificate against the system store: the caller adds its CA there (test/support/system_ca.ts).
 */
export async function startXrootd(opts: XrootdOptions): Promise<RunningXrootd> {
  requireTool('xrootd', 'xrootd-server')
  if (!existsSync(join('/usr/lib/x86_64-linux-gnu', SCITOKENS_PLUGIN)) && !existsSync(join('/usr/lib/aarch64-linux-gnu', SCITOKENS_PLUGIN)) && !existsSync(join('/usr/lib64', SCITOKENS_PLUGIN))) {
    throw new Error(`${SCITOKENS_PLUGIN} not found: install the Debian package xrootd-scitokens-plugins (apt-get install xrootd-scitokens-plugins)`)
  }
  requireTool('nsenter', 'util-linux')
  requireTool('unshare', 'util-linux')
  requireTool('ip', 'iproute2')
  if (process.getuid?.() !== 0) throw new Error('xrootd in a private network namespace needs root (CI runs as root)')
  const uid = Number(execFileSync('id', ['-u', 'xrootd'], { encoding: 'utf8' }).trim())
  const gid = Number(execFileSync('id', ['-g', 'xrootd'], { encoding: 'utf8' }).trim())

  const issuer = new URL(opts.issuer)
  const issuerPort = Number(issuer.port || 443)
  const dir = mkdtempSync(join(tmpdir(), 'ctb-xrootd-'))
  // xrootd drops to the xrootd user: it must traverse the path and own what it writes.
  chmodSync(dir, 0o755)
  for (const d of ['data/store', 'admin', 'run', 'cache', 'tls']) mkdirSync(join(dir, d), { recursive: true })
  const tls = await ensureDevTls(join(dir, 'tls'), ['localhost'])
  const issuerHost = issuer.host
  writeFileSync(join(dir, 'xrootd.cfg'), [
    'all.export /store',
    `oss.localroot ${dir}/data`,
    `all.adminpath ${dir}/admin`,
    `all.pidpath ${dir}/run`,
    `xrd.port ${XROOTD_ROOT_PORT}`,
    'xrd.network nodnr',
    `xrd.protocol XrdHttp:${XROOTD_HTTPS_PORT} libXrdHttp.so`,
    `xrd.tls ${tls.certFile} ${tls.keyFile}`,
    // XrdHttp will not serve HTTPS without a CA location, even for server-only TLS.
    `xrd.tlsca certfile ${tls.caFile}`,
    // Without this the Authorization header never reaches the SciTokens plugin and every request is 403.
    'http.header2cgi Authorization authz',
    'ofs.authorize',
    `ofs.authlib ${SCITOKENS_PLUGIN.replace('-5.so', '.so')} config=${dir}/scitokens.cfg`,
    'scitokens.trace all',
    '',
  ].join('\n'))
  writeFileSync(join(dir, 'scitokens.cfg'), [
    '[Global]',
    // With no audience every token's aud is refused except the "any" one.
    `audience = https://localhost:${XROOTD_HTTPS_PORT}`,
    '',
    '[Issuer broker]',
    // Compared byte for byte with the token's iss and used for discovery.
    `issuer = ${opts.issuer}`,
    'base_path = /store',
    'default_user = xrootd',
    '',
  ].join('\n'))
  chownTree(dir, uid, gid)

  const children: ChildProcess[] = []
  let relayServer: Server | undefined
  const logFile = join(dir, 'xrootd.log')
  const close = async () => {
    for (const c of children.reverse()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await new Promise<void>((r) => (relayServer ? relayServer.close(() => r()) : r()))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    // The namespace lives as long as this process; `unshare` and `sh` exec, so its pid is the holder's.
    const holder = spawn('unshare', ['--net', 'sh', '-c', 'ip link set lo up && echo ready && exec sleep 86400'], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(holder)
    await waitForLine(holder, 'ready', 'network namespace')
    const netns = `/proc/${holder.pid}/ns/net`
    const inNetns = (command: string[]) => ['nsenter', `--net=${netns}`, ...command]

    const sock = join(dir, 'issuer.sock')
    relayServer = createServer((c) => {
      const up = connect(issuerPort, issuer.hostname === 'localhost' ? '127.0.0.1' : issuer.hostname)
      c.pipe(up).pipe(c)
      const end = () => { c.destroy(); up.destroy() }
      c.on('error', end)
      up.on('error', end)
    })
    await new Promise<void>((resolve, reject) => { relayServer!.once('error', reject); relayServer!.listen(sock, resolve) })
    const [rcmd, ...rargs] = inNetns([process.execPath, join(import.meta.dirname, 'netns_relay.ts'), String(issuerPort), sock])
    const relay = spawn(rcmd!, rargs, { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(relay)
    await waitForLine(relay, 'ready', `relay for ${issuerHost}`)

    const [xcmd, ...xargs] = inNetns(['env', `HOME=${dir}`, `XDG_CACHE_HOME=${dir}/cache`, 'xrootd', '-R', 'xrootd', '-c', join(dir, 'xrootd.cfg'), '-l', logFile])
    const xrootd = spawn(xcmd!, xargs, { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(xrootd)
    const url = `https://localhost:${XROOTD_HTTPS_PORT}`
    const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '')
    let up = false
    for (let i = 0; i < 100 && !up; i++) {
      await new Promise((r) => setTimeout(r, 100))
      if (xrootd.exitCode !== null) throw new Error(`xrootd exited ${xrootd.exitCode}: ${log().slice(-800)}`)
      up = /initialization completed/.test(log())
    }
    if (!up) throw new Error(`xrootd did not start in 10 s: ${log().slice(-800)}`)
    return { url, caFile: tls.caFile, dataDir: join(dir, 'data'), inNetns, log, close }
  } catch (err) {
    await close()
    throw err
  }
}

/** Writes a file under the export as the xrootd user owns it. */
export function putStoreFile(x: RunningXrootd, path: string, body: string): void {
  const uid = statSync(x.dataDir).uid
  const gid = statSync(x.dataDir).gid
  const full = join(x.dataDir, path)
  mkdirSync(join(full, '..'), { recursive: true })
  writeFileSync(full, body)
  chownTree(join(x.dataDir, path.split('/').filter(Boolean)[0]!), uid, gid)
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid)
  if (statSync(path).isDirectory()) for (const n of readdirSync(path)) chownTree(join(path, n), uid, gid)
}

function waitForLine(child: ChildProcess, line: string, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    const t = setTimeout(() => reject(new Error(`${what} did not start: ${err.slice(-400)}`)), 10_000)
    child.stdout!.on('data', (c) => { out += c; if (out.includes(`${line}\n`)) { clearTimeout(t); resolve() } })
    child.stderr!.on('data', (c) => { err += c })
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`${what} exited ${code}: ${err.slice(-400)}`)) })
  })
}
