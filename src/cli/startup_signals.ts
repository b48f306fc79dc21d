import { constants } from 'node:os'

/** What arrived while `serve` started, for it to act on once the broker serves. */
export interface HeldSignals {
  /** How many SIGHUPs arrived: any at all means one reload now (the files may have changed after they were read). */
  reloads: number
  /** The first SIGTERM or SIGINT, if one arrived: stop as soon as start-up is done. */
  stop?: NodeJS.Signals
}

export interface StartupSignals {
  /** Stops holding and says what arrived. Call it in the same tick that installs the running handlers. */
  release(): HeldSignals
}

let current: (StartupSignals & { notify: (line: string) => void }) | undefined

/**
 * From the moment `serve` is chosen until the broker serves, SIGHUP and SIGTERM/SIGINT are held rather than
 * left to Node's default, which ends the process on any of them. Systemd (Type=simple) and config management
 * may send HUP at any moment after the process starts, and a kill in the middle of creating keys or opening
 * the database leaves the operator to wonder what was written. A HUP is applied as a reload once started;
 * a TERM/INT lets start-up finish its writes and then stops cleanly. A second TERM/INT during start-up ends
 * the process at once (128 + signal number), for the operator whose start-up hangs.
 *
 * Idempotent: the CLI entry point calls it before loading the command, `serve` again; both get one holder.
 */
export function holdStartupSignals(notify: (line: string) => void): StartupSignals {
  if (current) return current
  const held: HeldSignals = { reloads: 0 }
  const onHup = () => { held.reloads++ }
  const onStop = (signal: NodeJS.Signals) => {
    if (held.stop) {
      holder.notify(`${signal} again during start-up: exiting now`)
      process.exit(128 + (constants.signals[signal] ?? 0))
    }
    held.stop = signal
    holder.notify(`${signal} during start-up: stopping once start-up has finished`)
  }
  process.on('SIGHUP', onHup)
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  const holder = {
    notify,
    release(): HeldSignals {
      process.off('SIGHUP', onHup)
      process.off('SIGTERM', onStop)
      process.off('SIGINT', onStop)
      if (current === holder) current = undefined
      return { ...held }
    },
  }
  current = holder
  return holder
}
