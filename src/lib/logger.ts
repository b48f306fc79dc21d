import { destination as fileDestination, pino, stdTimeFunctions, type DestinationStream } from 'pino'
import { batchedDestination, type BatchedDestination } from './batched_destination.ts'
import { keepStderrLines, stderrLines } from './stderr_lines.ts'

/** Structured one-line JSON logs on stderr; stdout stays free for CLI output. Never log tokens or secrets. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

export const LOG_LEVELS = ['error', 'warn', 'info'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface LoggerOptions {
  /** The least severe level written; default info. */
  level?: LogLevel
  /**
   * Only for the default destination (stderr): false keeps the lines of one event-loop turn and writes
   * them together at the turn's end, true writes each line before returning. Default false: see
   * docs/logging.md.
   */
  sync?: boolean
}

/**
 * Field names that hold a credential. Callers are expected never to pass one; this is the net under a
 * mistake, so a slip prints `[redacted]`, not a token. Top level only: wildcard paths (`*.token`) made
 * each line cost about 23 µs instead of 2 (docs/logging.md).
 */
const SECRET_KEYS = [
  'token', 'access_token', 'refresh_token', 'id_token', 'subject_token', 'actor_token', 'client_secret',
  'password', 'secret', 'authorization', 'bearer', 'credential', 'enrolment_credential', 'private_key', 'key', 'd',
]
const REDACT_PATHS = [...SECRET_KEYS, 'headers.authorization', 'headers.cookie']

/**
 * A pino logger behind our three-method interface, so that callers never depend on pino. Lines keep the
 * shape the broker always wrote: `time` (ISO), `level` (a name), `msg`, then the fields.
 * @param write where each line goes (with its newline); default stderr.
 */
export function createLogger(write?: (line: string) => void, options: LoggerOptions = {}): Logger {
  const destination: DestinationStream = write
    ? { write: (line: string) => { write(line) } }
    : options.sync ? fileDestination({ fd: 2, sync: true }) : stderrBatched()
  const logger = pino({
    level: options.level ?? 'info',
    base: undefined,
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // `err` is already a plain object (errorFields below); pino's own serializer would add its stack back.
    serializers: { err: (e: unknown) => e },
  }, destination)
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (!logger.isLevelEnabled(level)) return
    if (!fields) return logger[level](msg)
    const err = fields.err
    logger[level](err instanceof Error ? { ...fields, err: errorFields(err, level === 'error') } : fields, msg)
  }
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  }
}

/**
 * The process's one stderr destination, shared by its loggers: the lines of an event-loop turn joined and
 * written by pino's sonic-boom in one synchronous write at the turn's end (and at exit, or before the
 * CLI's own error line). Synchronous, so nothing else written to stderr can overtake a line handed over:
 * sonic-boom's asynchronous mode let the CLI's error line pass a chunk still being written on the
 * thread pool. Per turn, the write costs what the asynchronous hand-off did (docs/logging.md).
 */
function stderrBatched(): BatchedDestination {
  return stderrLines() ?? keepStderrLines(batchedDestination(fileDestination({ fd: 2, sync: true })))
}

/**
 * An error as one JSON object. Below `error` (an IAM outage, a failed key refresh) the message's first
 * line and its code are what an operator acts on; a stack per refused request would bury the log. Only
 * errors (a bug, an unrecorded denial) keep the stack, still inside one JSON line.
 */
export function errorFields(err: Error, withStack: boolean): Record<string, unknown> {
  const code = (err as { code?: unknown }).code
  return {
    name: err.name,
    message: err.message.split('\n')[0],
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
    ...(withStack && err.stack ? { stack: err.stack } : {}),
  }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} }
