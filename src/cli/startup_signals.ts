import { constants } from 'node:os'

/** What arrived while `serve` started, for it to act on once the broker serves. */
export interface HeldSignals {
  /** How many SIGHUPs arrived: any at all means one reload now (the files may have changed after they were read). */
  reloads: number
  /** The first SIGTERM or SIGINT, if one arrived: stop as soon as start-up is done. */
  stop?: NodeJS.Signals
  /** When its handler ran (performance.now()), for telling a repeat of it from a second request (`asksAgain`). */
  stopAt?: number
}

/**
 * A SIGTERM or SIGINT whose handler runs this soon after the first one's is the same request delivered
 * twice, not someone asking again: a terminal's Ctrl-C reaches the whole process group, and npm's
 * run-script (with bash as its script shell, the broker is its direct child) or the bin's re-spawning
 * parent forwards it to the broker as well, a moment later. Two signals that arrive while start-up blocks
 * the event loop also run their handlers together, and count as one.
 */
export const SAME_STOP_WITHIN_MS = 250

/** True when a stop signal handled now, after the first one handled at `firstAt`, is a second request. */
export function asksAgain(firstAt: number): boolean {
  return performance.now() - firstAt >= SAME_STOP_WITHIN_MS
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
 * the process at once (128 + signal number), for the operator whose start-up hangs; the same one delivered
 * twice is not a second (SAME_STOP_WITHIN_MS).
 *
 * Idempotent: the CLI entry point calls it before loading the command, `serve` again; both get one holder.
 */
export function holdStartupSignals(notify: (line: string) => void): StartupSignals {
  if (current) return current
  const held: HeldSignals = { reloads: 0 }
  const onHup = () => { held.reloads++ }
  const onStop = (signal: NodeJS.Signals) => {
    if (held.stop) {
      if (!asksAgain(held.stopAt!)) return
      holder.notify(`${signal} again during start-up: exiting now`)
      process.exit(128 + (constants.signals[signal] ?? 0))
    }
    held.stop = signal
    held.stopAt = performance.now()
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
