/**
 * Abuse of HTTP itself around POST /token: oversized and slow bodies, wrong content types, path
 * variants, header floods and request-smuggling shapes. Every wait is bounded by a short timeout.
 * Requests Node's HTTP parser refuses never reach the broker's code: those must end in a 4xx or a
 * closed connection, never a token or a 5xx.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { replyOf, sendAttack, summarize, Tally } from './support/attack.ts'
import { rawExchange, rawPost, type RawOutcome } from './support/raw_http.ts'
import { encodeForm, exchangeForm, startSecurityBroker, type Reply, type SecurityBroker } from './support/security_broker.ts'

const tally = new Tally()
let sb: SecurityBroker
let startSeq = 0
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const EP = 'ep-1.cloud-a.example.org'

beforeAll(async () => {
  sb = await startSecurityBroker()
  startSeq = await sb.auditHead()
})
afterAll(async () => { await sb?.close() })

const validBody = async () => encodeForm(exchangeForm(await sb.token.provisioner(), 'startd', { host: EP }))
const forgedBody = async () => { const t = await sb.token.provisioner(); return encodeForm(exchangeForm(`${t.slice(0, -6)}AAAAAA`, 'startd', { host: EP })) }

/** Parser-level abuse: a 4xx or a closed connection, never 2xx or 5xx; tallied under `cls`. */
function expectParserRefusal(cls: string, o: RawOutcome): void {
  const c = tally.of(cls)
  c.sent++
  c.unknownSent++
  if (o.kind === 'reply' && o.status >= 500) c.serverErrors++
  if (o.kind === 'reply' && typeof o.json?.access_token === 'string') c.wronglyIssued++
  expect(o.kind, JSON.stringify(o).slice(0, 300)).not.toBe('timeout')
  if (o.kind === 'reply') {
    expect(o.status, o.text.slice(0, 200)).toBeGreaterThanOrEqual(400)
    expect(o.status, o.text.slice(0, 200)).toBeLessThan(500)
  }
}

describe('oversized bodies (1 MiB)', () => {
  it('declared by Content-Length', async () => {
    await sendAttack(sb, tally, { cls: 'oversized-body', caller: 'unknown', body: `${await validBody()}&pad=${'x'.repeat(1 << 20)}`, headers: FORM, error: 'invalid_request' })
  })
  it('chunked, without Content-Length, on the socket', async () => {
    const body = `${await validBody()}&pad=${'x'.repeat(1 << 20)}`
    const chunks: string[] = []
    for (let i = 0; i < body.length; i += 64 * 1024) { const part = body.slice(i, i + 64 * 1024); chunks.push(`${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`) }
    chunks.push('0\r\n\r\n')
    const id = tally.nextId('oversized-body', 'socket')
    const o = await rawExchange(sb.port, { head: ['POST /token HTTP/1.1', 'host: 127.0.0.1', 'content-type: application/x-www-form-urlencoded', 'transfer-encoding: chunked', 'connection: close', `x-request-id: ${id}`].join('\r\n'), chunks, timeoutMs: 5_000 })
    expectParserRefusal('oversized-body', o)
    const r = replyOf(o, id)
    expect(r.json).toMatchObject({ error: 'invalid_request' })
    expect(r.headers['cache-control']).toBe('no-store')
  })
  it('a 1 MiB subject token inside a small-enough declared length is refused before parsing', async () => {
    await sendAttack(sb, tally, { cls: 'oversized-body', caller: 'unknown', form: exchangeForm('e'.repeat(1 << 20), 'startd', { host: EP }), error: 'invalid_request' })
  })
})

describe('wrong content types (with an otherwise valid request)', () => {
  it.each([
    ['application/json', 'json'],
    ['text/plain', 'form'],
    ['multipart/form-data; boundary=x', 'form'],
    ['application/x-www-form-urlencodedx', 'form'],
    ['application/x-www-form-urlencoded2', 'form'],
    ['application/json; x=application/x-www-form-urlencoded', 'form'],
    ['text/html, application/x-www-form-urlencoded', 'form'],
    ['', 'form'],
  ])('%j', async (type, shape) => {
    const body = await validBody()
    const payload = shape === 'json' ? JSON.stringify(Object.fromEntries(new URLSearchParams(body))) : body
    await sendAttack(sb, tally, { cls: 'content-type', caller: 'unknown', body: payload, headers: type ? { 'content-type': type } : {}, error: 'invalid_request' })
  })
})

describe('a content-coded body (RFC 9110 §8.4: the broker decodes none)', () => {
  // A form labelled gzip or deflate is not a form the broker can read; reading its bytes as plain text would
  // judge a different body than any intermediary that honours the label. Refused, on both paths.
  it.each(['gzip', 'deflate', 'br', 'identity, gzip'])('Content-Encoding: %s', async (coding) => {
    await sendAttack(sb, tally, { cls: 'content-type', caller: 'unknown', body: await validBody(), headers: { ...FORM, 'content-encoding': coding }, error: 'invalid_request' })
  })
  it('Content-Encoding: identity is no coding at all', async () => {
    for (const r of await Promise.all([rawPost(sb.port, '/token', await validBody(), { ...FORM, 'content-encoding': 'identity' }), rawPost(sb.port, '/token?via=hono', await validBody(), { ...FORM, 'content-encoding': 'identity' })])) {
      expect(r.kind === 'reply' && r.status, JSON.stringify(r).slice(0, 200)).toBe(200)
    }
  })
})

describe('a transfer-coded body other than chunked (RFC 9112 §6.1: the broker decodes only chunked)', () => {
  // Node de-chunks `Transfer-Encoding: gzip, chunked` and hands over the gzip bytes undecoded; reading them
  // as plain text judges a different body than an intermediary that honours the coding, as with
  // Content-Encoding above. Refused on both paths; plain chunked (any case) is every client's right.
  const chunked = (body: string) => [`${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`]
  async function post(path: string, te: string[]): Promise<Reply> {
    const id = tally.nextId('content-type', 'socket')
    const head = [`POST ${path} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close', 'content-type: application/x-www-form-urlencoded', ...te.map((t) => `transfer-encoding: ${t}`), `x-request-id: ${id}`].join('\r\n')
    return replyOf(await rawExchange(sb.port, { head, chunks: chunked(await validBody()), timeoutMs: 5_000 }), id)
  }
  it.each([
    ['/token', ['gzip, chunked']], ['/token?via=hono', ['gzip, chunked']],
    ['/token', ['deflate', 'chunked']], ['/token?via=hono', ['deflate', 'chunked']],
  ] as [string, string[]][])('POST %s, Transfer-Encoding %j: invalid_request', async (path, te) => {
    const r = await post(path, te)
    expect(r.status, r.text).toBe(400)
    expect(r.json).toMatchObject({ error: 'invalid_request' })
  })
  it.each([['/token', 'chunked'], ['/token?via=hono', 'Chunked']])('POST %s, Transfer-Encoding: %s is read', async (path, te) => {
    const r = await post(path, [te])
    expect(r.status, r.text).toBe(200)
  })
})

describe('header lines beyond http.max_headers_count (100 by default)', () => {
  // The Content-Type and Content-Encoding checks above hold only if the broker sees every field line a proxy
  // in front sees. Node 20 (checked) read maxHeadersCount lines and dropped the rest without a word, which
  // hid a Content-Encoding or a second Content-Type on line 101 from both paths; the broker now refuses a
  // request with more lines than the limit itself, whichever Node runs (src/http/header_line_limit.ts).
  // 431: RFC 6585 §5.
  async function post(path: string, lines: number, lastLine: string): Promise<Reply> {
    const body = await validBody()
    const id = tally.nextId('header-flood', 'socket')
    const first = ['host: 127.0.0.1', 'connection: close', 'content-type: application/x-www-form-urlencoded', `content-length: ${Buffer.byteLength(body)}`, `x-request-id: ${id}`]
    const pad = Array.from({ length: lines - 1 - first.length }, (_, i) => `x-pad-${i}: p`)
    const head = [`POST ${path} HTTP/1.1`, ...first, ...pad, lastLine].join('\r\n')
    return replyOf(await rawExchange(sb.port, { head, chunks: [body], timeoutMs: 5_000 }), id)
  }
  it.each([
    ['/token', 'content-encoding: gzip'], ['/token?via=hono', 'content-encoding: gzip'],
    ['/token', 'content-type: application/json'], ['/token?via=hono', 'content-type: application/json'],
  ])('POST %s with %j as line 101: 431 invalid_request, not read without it', async (path, line) => {
    const r = await post(path, 101, line)
    expect(r.status, r.text.slice(0, 200)).toBe(431)
    expect(r.json).toMatchObject({ error: 'invalid_request' })
    expect(r.headers['cache-control']).toBe('no-store')
  })
  // A client sending many short lines (here 120, some 2 KB in all: far below http.max_header_bytes) must be
  // told that the count is what is refused, or its operator looks for a size that is not there. Line 101 is
  // refused by the broker itself, a later one by Node's parser (newer Node): the same words either way.
  it.each([101, 120])('%i short header lines: the description names header lines, not only size', async (lines) => {
    const r = await post('/token', lines, 'x-pad-last: p')
    expect(r.status, r.text.slice(0, 200)).toBe(431)
    expect(String((r.json as { error_description?: unknown }).error_description)).toMatch(/header lines/)
  })
  it('100 lines are every client\'s right', async () => {
    const r = await post('/token', 100, 'x-pad-last: p')
    expect(r.status, r.text.slice(0, 200)).toBe(200)
  })
})

describe('two Content-Type field lines (RFC 9110 §5.3: a singleton field)', () => {
  // Node keeps the first of a duplicated Content-Type in req.headers; hono sees them joined. Either way the
  // request's type is ambiguous, and the fast path must refuse it as the hono route does.
  it.each([
    ['/token', 'form then json', ['application/x-www-form-urlencoded', 'application/json']],
    ['/token', 'form twice', ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded']],
    ['/token?via=hono', 'form then json', ['application/x-www-form-urlencoded', 'application/json']],
  ] as [string, string, string[]][])('POST %s, %s: invalid_request', async (path, _name, types) => {
    const body = await validBody()
    const id = tally.nextId('content-type', 'socket')
    const o = await rawExchange(sb.port, { head: [`POST ${path} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close', ...types.map((t) => `content-type: ${t}`), `content-length: ${Buffer.byteLength(body)}`, `x-request-id: ${id}`].join('\r\n'), chunks: [body], timeoutMs: 5_000 })
    const r = replyOf(o, id)
    expect(r.status, r.text).toBe(400)
    expect(r.json).toMatchObject({ error: 'invalid_request' })
    expect(r.headers['cache-control']).toBe('no-store')
  })
})

describe('path variants with a valid request', () => {
  // Whatever answers, a token only leaves with its audit record, and nothing answers 5xx.
  it.each(['/token/', '//token', '/TOKEN', '/%74oken', '/./token', '/token;a', '/a/../token', '/token%00', '/token%2f', '/token?', '/token?grant_type=x', 'http://evil.example/token', '*'])('%s', async (path) => {
    const id = tally.nextId('path-variant', 'socket')
    const seq = await sb.auditHead()
    const o = await rawPost(sb.port, path, await validBody(), { ...FORM, 'x-request-id': id })
    const c = tally.of('path-variant')
    c.sent++
    expect(o.kind).toBe('reply')
    const r = replyOf(o, id)
    if (r.status >= 500) c.serverErrors++
    expect(r.status, r.text).toBeLessThan(500)
    // The audit request id is the broker's own, returned in X-Request-Id (the caller's is only a log label).
    const brokerId = r.headers['x-request-id']
    const issued = (await sb.auditSince(seq)).filter((x) => x.event.type === 'token.issued' && brokerId !== undefined && x.event.requestId === brokerId)
    if (typeof r.json?.access_token === 'string') {
      if (issued.length !== 1) c.wronglyIssued++
      expect(issued, 'a token left without its audit record').toHaveLength(1)
    } else {
      expect(r.status, r.text).toBeGreaterThanOrEqual(400)
      expect(issued).toHaveLength(0)
    }
    for (const s of sb.secrets()) expect(r.text.includes(s)).toBe(false)
  })
})

describe('header floods and smuggling shapes', () => {
  const head = (lines: string[]) => ['POST /token HTTP/1.1', 'host: 127.0.0.1', 'connection: close', ...lines].join('\r\n')
  it('headers beyond Node\'s limit are refused by the parser', async () => {
    const body = await forgedBody()
    const flood = Array.from({ length: 400 }, (_, i) => `x-flood-${i}: ${'v'.repeat(100)}`)
    expectParserRefusal('header-flood', await rawExchange(sb.port, { head: head([...flood, 'content-type: application/x-www-form-urlencoded', `content-length: ${body.length}`]), chunks: [body], timeoutMs: 3_000 }))
  })
  it('one 64 KiB header is refused by the parser', async () => {
    expectParserRefusal('header-flood', await rawExchange(sb.port, { head: head([`x-request-id: ${'a'.repeat(64 * 1024)}`, 'content-length: 0']), timeoutMs: 3_000 }))
  })
  it('many small headers within the limit reach the endpoint and are refused there', async () => {
    const extra = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`x-many-${i}`, 'v']))
    await sendAttack(sb, tally, { cls: 'header-flood', caller: 'unknown', body: await forgedBody(), headers: { ...FORM, ...extra } }, ['socket'])
  })
  it.each([
    ['two different Content-Length', (b: string) => [`content-length: ${b.length}`, `content-length: ${b.length + 5}`]],
    ['Content-Length and Transfer-Encoding', (b: string) => [`content-length: ${b.length}`, 'transfer-encoding: chunked']],
    ['Transfer-Encoding not chunked', () => ['transfer-encoding: gzip']],
    ['a negative Content-Length', () => ['content-length: -1']],
    ['a header with a bare LF value', (b: string) => [`content-length: ${b.length}`, 'x-bad: a\nb']],
  ] as [string, (b: string) => string[]][])('%s', async (_n, lines) => {
    const body = await validBody()
    expectParserRefusal('smuggling', await rawExchange(sb.port, { head: head(['content-type: application/x-www-form-urlencoded', ...lines(body)]), chunks: [body], timeoutMs: 3_000 }))
  })
})

describe('requests Node\'s parser refuses answer in the API\'s error shape', () => {
  // Node's own answers to these are a bare status line and no body; the broker's rule is an OAuth error JSON
  // for every bad request, not cacheable. Status as Node chooses it (RFC 9110 §15.5.1, RFC 6585 §5).
  it.each([
    ['an unknown method', 400, ['BREW /token HTTP/1.1', 'host: 127.0.0.1']],
    ['a request line that is not HTTP', 400, ['POST /token HTTP/9.x', 'host: 127.0.0.1']],
    ['two different Content-Length', 400, ['POST /token HTTP/1.1', 'host: 127.0.0.1', 'content-length: 1', 'content-length: 2']],
    ['a header block beyond the size limit', 431, ['POST /token HTTP/1.1', 'host: 127.0.0.1', `x-big: ${'a'.repeat(64 * 1024)}`]],
  ] as [string, number, string[]][])('%s: %i invalid_request', async (_name, status, lines) => {
    const o = await rawExchange(sb.port, { head: lines.join('\r\n'), timeoutMs: 3_000 })
    expect(o.kind, JSON.stringify(o)).toBe('reply')
    const r = o as Extract<RawOutcome, { kind: 'reply' }>
    expect(r.status).toBe(status)
    expect(r.json).toMatchObject({ error: 'invalid_request' })
    expect(r.headers['cache-control']).toBe('no-store')
    expect(r.headers['connection']).toBe('close')
  })
})

describe('slow bodies', () => {
  it('a body trickling in ten pieces is still judged (forged token refused)', async () => {
    const body = await forgedBody()
    const step = Math.ceil(body.length / 10)
    const chunks = Array.from({ length: 10 }, (_, i) => body.slice(i * step, (i + 1) * step))
    const id = tally.nextId('slow-body', 'socket')
    const o = await rawExchange(sb.port, { head: ['POST /token HTTP/1.1', 'host: 127.0.0.1', 'connection: close', 'content-type: application/x-www-form-urlencoded', `content-length: ${Buffer.byteLength(body)}`, `x-request-id: ${id}`].join('\r\n'), chunks, gapMs: 50, timeoutMs: 5_000 })
    expectParserRefusal('slow-body', o)
    expect(replyOf(o, id).json).toMatchObject({ error: 'invalid_request' })
  })
  it('twenty stalled bodies do not stop a valid request from being served', async () => {
    const stalled = Array.from({ length: 20 }, () => rawExchange(sb.port, {
      head: ['POST /token HTTP/1.1', 'host: 127.0.0.1', 'content-type: application/x-www-form-urlencoded', 'content-length: 10000'].join('\r\n'),
      chunks: ['grant_type=urn'], timeoutMs: 2_500,
    }))
    await new Promise((r) => setTimeout(r, 200))
    const started = Date.now()
    const ok = await rawPost(sb.port, '/token', await validBody(), FORM, 2_000)
    expect(ok.kind === 'reply' && ok.status, JSON.stringify(ok).slice(0, 200)).toBe(200)
    expect(Date.now() - started).toBeLessThan(2_000)
    for (const o of await Promise.all(stalled)) {
      const c = tally.of('slow-body')
      c.sent++
      c.unknownSent++
      // A stalled body gets no answer within the bound, or a refusal: never a token.
      if (o.kind === 'reply') {
        if (o.status >= 500) c.serverErrors++
        if (typeof o.json?.access_token === 'string') c.wronglyIssued++
        expect(o.status).toBeLessThan(500)
        expect(o.json?.access_token).toBeUndefined()
      }
    }
  })
})

describe('bodies the client cuts off', () => {
  /** The log lines about one request, found by the X-Request-Id the test sent; waits (bounded) for its access line. */
  async function linesOf(clientId: string): Promise<Record<string, unknown>[]> {
    for (let i = 0; i < 50; i++) {
      const mine = sb.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.clientRequestId === clientId || JSON.stringify(l).includes(clientId))
      if (mine.some((l) => l.msg === 'request')) return mine
      await new Promise((r) => setTimeout(r, 20))
    }
    throw new Error(`no access line for ${clientId}`)
  }
  /** The client sends part of the declared body and closes: its doing, so a 4xx invalid_request on record, never a broker error. */
  async function cutOff(path: string, lines: string[], part: string): Promise<Record<string, unknown>[]> {
    const id = tally.nextId('cut-off-body', 'socket')
    const o = await rawExchange(sb.port, { head: [`POST ${path} HTTP/1.1`, 'host: 127.0.0.1', `x-request-id: ${id}`, ...lines].join('\r\n'), chunks: [part], timeoutMs: 300 })
    expect(o.kind).not.toBe('reply')
    return linesOf(id)
  }
  const judge = (lines: Record<string, unknown>[]) => {
    expect(lines.filter((l) => l.level === 'error').map((l) => l.msg)).toEqual([])
    expect(lines.find((l) => l.msg === 'request')).toMatchObject({ status: 400, error: 'invalid_request' })
  }
  it.each(['/token', '/token?via=hono'])('POST %s with a declared length', async (path) => {
    judge(await cutOff(path, ['content-type: application/x-www-form-urlencoded', 'content-length: 1000'], 'grant_type=urn'))
  })
  it('POST /token chunked, stopped inside a chunk', async () => {
    judge(await cutOff('/token', ['content-type: application/x-www-form-urlencoded', 'transfer-encoding: chunked'], '40\r\ngrant_type=urn'))
  })
  it('an admin route that reads a chunked body (POST /v1/revocations)', async () => {
    judge(await cutOff('/v1/revocations', [`authorization: Bearer ${sb.bootstrapToken}`, 'content-type: application/json', 'transfer-encoding: chunked'], '40\r\n{"sub":'))
  })
})

summarize('HTTP abuse of POST /token', () => sb, tally, () => startSeq)
