/** What readBounded returns once more than its limit arrived. */
export const TOO_LARGE = Symbol('too large')

/**
 * A response body read to its end, or TOO_LARGE as soon as more than `max` bytes arrived (the rest is not
 * read: the stream is cancelled there). A client's timeout bounds how long an answer may stream, not how
 * much of it arrives in that time, so without this one answer could fill the client's memory. A body that
 * breaks off reads as undefined.
 */
export async function readBounded(body: ReadableStream<Uint8Array> | null | undefined, max: number): Promise<Buffer | typeof TOO_LARGE | undefined> {
  if (!body) return Buffer.alloc(0)
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > max) {
        void reader.cancel().catch(() => undefined)
        return TOO_LARGE
      }
      chunks.push(value)
    }
  } catch {
    return undefined
  }
  return Buffer.concat(chunks)
}

/** The body as JSON: undefined when it is not JSON or broke off, TOO_LARGE past `max` bytes. */
export async function readJsonBounded(body: ReadableStream<Uint8Array> | null | undefined, max: number): Promise<unknown> {
  const bytes = await readBounded(body, max)
  if (bytes === undefined || bytes === TOO_LARGE) return bytes
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch {
    return undefined
  }
}
