/** Where the batched lines go: pino's sonic-boom (pino.destination) has this shape. */
export interface LineSink {
  write(chunk: string): unknown
  flushSync(): void
}

/** A pino destination whose lines are kept until `flush` (what the lines were written to so far). */
export interface BatchedDestination {
  write(line: string): void
  /** Hands every kept line to the sink at once; `sync` also waits until the sink has written them. */
  flush(sync?: boolean): void
}

/**
 * Lines written during one turn of the event loop, handed to the sink as one chunk at the turn's end
 * (setImmediate). Under load one turn answers many requests, so their access lines cost one write;
 * idle, a line still leaves within the turn it was logged in. Why not sonic-boom's own `minLength`:
 * it measures the whole pending string (`Buffer.byteLength`) on every write, so batching there cost
 * 5-6 µs a line, half the access line, where joining the turn's lines costs well under one
 * (docs/logging.md has the figures).
 */
export function batchedDestination(sink: LineSink): BatchedDestination {
  let lines: string[] = []
  let scheduled = false
  const flush = (sync = false) => {
    scheduled = false
    if (lines.length > 0) {
      const chunk = lines.length === 1 ? lines[0]! : lines.join('')
      lines = []
      sink.write(chunk)
    }
    if (sync) sink.flushSync()
  }
  return {
    write(line) {
      lines.push(line)
      if (!scheduled) { scheduled = true; setImmediate(flush) }
    },
    flush,
  }
}
