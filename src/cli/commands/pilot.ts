import { CliError, type CommandIo } from '../command.ts'
import { PILOT_LIST_HELP, pilotListCommand } from './pilot_list.ts'
import { PILOT_SCRIPT_HELP, pilotScriptCommand } from './pilot_script.ts'

const HELP = `Usage: condor-token-broker pilot <command> [options]

Commands:
  script    write the sbatch pilot script that runs an HTCondor startd on SLURM nodes
  list      live SLURM pilots by site, job and node, with their last renewal (from the audit log)

Run "condor-token-broker pilot <command> --help" for a command's options.

${PILOT_SCRIPT_HELP}

${PILOT_LIST_HELP}`

const SUBCOMMANDS: Record<string, (argv: string[], io: CommandIo) => Promise<number>> = {
  script: pilotScriptCommand,
  list: pilotListCommand,
}

/** `pilot <sub>`: dispatches to one module per subcommand so each side of pilots owns its own file. */
export async function pilotCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  const run = SUBCOMMANDS[sub]
  if (!run) throw new CliError(`unknown pilot command "${sub}" (see pilot --help)`, 2)
  return run(rest, io)
}
