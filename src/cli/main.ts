#!/usr/bin/env node
import { BrokerError, OperatorError } from '../errors.ts'
import { flushStderrLog } from '../lib/stderr_lines.ts'
import { CliError, type CommandIo } from './command.ts'
import { holdStartupSignals } from './startup_signals.ts'
import { packageVersion } from './version.ts'

const HELP = `condor-token-broker: JWTs for HTCondor pools in place of X.509 proxies

Usage: condor-token-broker [--config FILE] <command> [options]
       condor-token-broker --version

Commands:
  serve            run the HTTPS service
  keys             init | list | rotate | import signing keys
  token            create | inspect IDTOKENs and SciTokens
  audit            list | export | verify | prune the audit log
  revoke           revoke tokens; list revocations; render SEC_TOKEN_REVOCATION_EXPR
  pilot            script: write the sbatch pilot for SLURM nodes; list: live pilots by site and job
  policy           check | explain issuance policies
  iam              check that the configured IAM issuers answer (discovery, JWKS, introspection)
  ca               init: create the pool CA for host certificates (SSL authentication)
  provision        render | plan | teardown: per-node bundles from a cluster template
  credmon          run our credmon on an access point; config: HTCondor knobs; wrapper: the job wrapper
  credential       revoke | list users' stored job credentials
  credential-storer  register job credentials at condor_submit (HTCondor's SEC_CREDENTIAL_STORER)

Run "condor-token-broker <command> --help" for a command's options.`

type Command = (argv: string[], io: CommandIo) => Promise<number>

/**
 * Each command is loaded when it runs: `serve` then holds none of what only the other commands use
 * (token minting and inspection, export, key import), and a one-shot command none of the server.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./commands/serve.ts')).serveCommand,
  keys: async () => (await import('./commands/keys.ts')).keysCommand,
  token: async () => (await import('./commands/token.ts')).tokenCommand,
  audit: async () => (await import('./commands/audit.ts')).auditCommand,
  revoke: async () => (await import('./commands/revoke.ts')).revokeCommand,
  pilot: async () => (await import('./commands/pilot.ts')).pilotCommand,
  policy: async () => (await import('./commands/policy.ts')).policyCommand,
  iam: async () => (await import('./commands/iam.ts')).iamCommand,
  ca: async () => (await import('./commands/ca.ts')).caCommand,
  provision: async () => (await import('./commands/provision.ts')).provisionCommand,
  credmon: async () => (await import('./commands/credmon.ts')).credmonCommand,
  credential: async () => (await import('./commands/credential.ts')).credentialCommand,
  'credential-storer': async () => (await import('./commands/credential_storer.ts')).credentialStorerCommand,
}

/**
 * `--config FILE` (or `--config=FILE`) before the command, where admins put a global option, is moved
 * behind the command's own arguments (ahead of a `--`), so each command reads it as its own `--config`.
 */
function configFirst(argv: string[]): { argv: string[] } | { error: string } {
  const first = argv[0]
  if (first === undefined || !(first === '--config' || first.startsWith('--config='))) return { argv }
  const file = first === '--config' ? argv[1] : first.slice('--config='.length)
  if (!file || file.startsWith('-')) return { error: '--config needs a file (condor-token-broker --config FILE <command> ...)' }
  const [cmd, ...rest] = argv.slice(first === '--config' ? 2 : 1)
  if (cmd === undefined) return { error: '--config FILE needs a command after it (see --help)' }
  const end = rest.indexOf('--')
  const own = end < 0 ? rest : rest.slice(0, end)
  const after = end < 0 ? [] : rest.slice(end)
  return { argv: [cmd, ...own, '--config', file, ...after] }
}

/** Runs one CLI invocation; every expected failure becomes one line on stderr and a non-zero status. */
export async function runCli(args: string[], io: CommandIo): Promise<number> {
  const moved = configFirst(args)
  if ('error' in moved) { io.err(`condor-token-broker: ${moved.error}`); return 2 }
  const argv = moved.argv
  const [cmd, ...rest] = argv
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    io.out(HELP)
    return cmd ? 0 : 2
  }
  if (cmd === '--version') { io.out(packageVersion()); return 0 }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined
  if (!command) {
    io.err(`condor-token-broker: unknown command "${cmd}" (see --help)`)
    return 2
  }
  // Before `serve` and all it imports load (most of its start-up): from here a SIGHUP or SIGTERM is held, not fatal.
  if (cmd === 'serve') holdStartupSignals(io.out)
  try {
    const run = await command()
    return await run(rest, io)
  } catch (err) {
    if (err instanceof CliError) { io.err(`condor-token-broker: ${err.message}`); return err.exitCode }
    if (err instanceof OperatorError || err instanceof BrokerError) { io.err(`condor-token-broker: ${err.message}`); return 1 }
    const fs = fileSystemProblem(err)
    if (fs) { io.err(`condor-token-broker: ${fs}`); return 1 }
    io.err(`condor-token-broker: internal error: ${(err as Error).message ?? String(err)}`)
    return 70
  }
}

// What a failed system call on a path says to an operator. Such a failure (a data_dir not yet created, owned by
// another user, a read-only /etc) is the environment's, not a bug: one line and exit 1, not "internal error".
const ERRNO_TEXT: Readonly<Record<string, string>> = {
  EACCES: 'permission denied', EPERM: 'operation not permitted', ENOENT: 'no such file or directory',
  ENOTDIR: 'not a directory', EISDIR: 'is a directory', EROFS: 'read-only file system', ENOSPC: 'no space left on device',
  EEXIST: 'already exists', EDQUOT: 'disk quota exceeded',
}

function fileSystemProblem(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException
  if (typeof e !== 'object' || e === null || typeof e.code !== 'string' || typeof e.syscall !== 'string' || typeof e.path !== 'string') return undefined
  const text = ERRNO_TEXT[e.code]
  return text ? `cannot ${e.syscall} ${e.path}: ${text} (${e.code})` : undefined
}

/** Entry point shared by `node src/cli/main.ts` and bin/condor-token-broker.js. */
export async function main(): Promise<void> {
  // `audit export | head`: a reader that goes away is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0)
    throw err
  })
  process.exitCode = await runCli(process.argv.slice(2), {
    out: (s) => process.stdout.write(`${s}\n`),
    err: (s) => { flushStderrLog(); process.stderr.write(`${s}\n`) },
    env: process.env,
  })
}

if (import.meta.main) await main()
