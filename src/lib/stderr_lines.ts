import type { BatchedDestination } from './batched_destination.ts'

// Apart from logger.ts so that the CLI entry point can flush without loading pino: every command,
// `--version` included, would otherwise pay for it (~7 MB and ~20 ms).
let lines: BatchedDestination | undefined

/** The process's batched stderr destination, if a logger has made one. */
export function stderrLines(): BatchedDestination | undefined {
  return lines
}

/** Makes `d` the process's batched stderr destination, written out when the process exits. */
export function keepStderrLines(d: BatchedDestination): BatchedDestination {
  lines = d
  process.once('exit', () => { d.flush(true) })
  return d
}

/**
 * Writes out, before returning, the log lines still waiting for the end of this turn. For whoever writes
 * to stderr past the loggers (the CLI's one-line errors): without it their line would precede the log
 * lines logged just before it, e.g. the cause of a failed start-up.
 */
export function flushStderrLog(): void {
  lines?.flush(true)
}
