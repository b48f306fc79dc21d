import { readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { tempDir } from './tmp.ts'

/** An HTTPS server on loopback answering every request with `answer`; counts the body bytes it sent. */
export async function answeringHttps(answer: (res: ServerResponse) => void): Promise<{ url: string; caFile: string; sent: () => number; close: () => Promise<void> }> {
  const tls = await ensureDevTls(tempDir('ctb-answering-'))
  const sockets = new Set<Socket>()
  let sent = 0
  const server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, (req, res) => {
    const write = res.write.bind(res)
    res.write = ((chunk: Buffer | string, ...rest: never[]) => { sent += Buffer.byteLength(chunk); return write(chunk, ...rest) }) as typeof res.write
    req.resume()
    req.on('end', () => answer(res))
  })
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, caFile: tls.caFile, sent: () => sent,
    close: () => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(() => r())) },
  }
}

/**
 * Streams `total` bytes of spaces with `status` as fast as the client reads, and stops when the client goes:
 * an answer no bounded client reads to its end.
 */
export function endlessAnswer(status: number, total: number): (res: ServerResponse) => void {
  return (res) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    let left = Math.ceil(total / chunk.length)
    res.on('close', () => { left = 0 })
    const pump = () => { while (left > 0) { left--; if (!res.write(chunk)) { res.once('drain', pump); return } } res.end() }
    pump()
  }
}
