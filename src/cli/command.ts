import { parseArgs, type ParseArgsConfig } from 'node:util'

/** A CLI failure the user caused: printed as one line, exit code 2 (usage) or 1 (anything else). */
export class CliError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode = 1) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

export interface CommandIo {
  out: (s: string) => void
  err: (s: string) => void
  env: NodeJS.ProcessEnv
}

export type Options = NonNullable<ParseArgsConfig['options']>

/** parseArgs with strict checking, mapped to one-line usage errors; `--help` is added to every command. */
export function parse<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true })
  } catch (err) {
    throw new CliError(`${(err as Error).message.split('\n')[0]} (see --help)`, 2)
  }
}

/** Parses a positive integer option or fails with a one-line message. */
export function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) <= 0) throw new CliError(`--${name} must be a positive whole number, got "${value}"`, 2)
  return Number(value)
}
