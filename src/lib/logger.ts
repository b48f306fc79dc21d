/** Structured one-line JSON logs on stderr; stdout stays free for CLI output. Never log tokens or secrets. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

export function createLogger(write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const emit = (level: string, msg: string, fields?: Record<string, unknown>) => {
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...fields }
    if (fields?.err instanceof Error) rec.err = { name: fields.err.name, message: fields.err.message, stack: fields.err.stack }
    write(`${JSON.stringify(rec)}\n`)
  }
  return {
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  }
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} }
