import type { Logger } from '../../lib/logger.ts'
import type { Credmon } from './credmon.ts'

export interface CredmonLoop {
  /** Starts a scan now (what SIGHUP does); a scan already running is followed by one more. */
  wake(): void
  /** Ends the loop after the scan in progress, if any. */
  stop(): Promise<void>
  /** Settles when the loop has ended. */
  readonly done: Promise<void>
}

/**
 * Scans, touches CREDMON_COMPLETE, sleeps `intervalSeconds` or until woken; the cadence of HTCondor's
 * credmons. A scan that throws is logged and the loop goes on: one bad directory must not stop the
 * refresh of every other user's tokens.
 */
export function startCredmonLoop(credmon: Credmon, intervalSeconds: number, log: Logger): CredmonLoop {
  let stopped = false
  let pendingWake = false
  let wakeSleeper: (() => void) | undefined
  const wake = () => {
    pendingWake = true
    wakeSleeper?.()
  }
  const sleep = () => new Promise<void>((resolve) => {
    if (pendingWake || stopped) { resolve(); return }
    const t = setTimeout(done, intervalSeconds * 1000)
    function done() {
      clearTimeout(t)
      wakeSleeper = undefined
      resolve()
    }
    wakeSleeper = done
  })
  const done = (async () => {
    while (!stopped) {
      pendingWake = false
      try {
        const s = await credmon.scan()
        if (s.refreshed || s.failed || s.removed) log.info('credmon: scan complete', { ...s })
      } catch (err) {
        log.error(`credmon: scan failed: ${(err as Error).message}`)
      }
      await sleep()
    }
  })()
  return {
    wake,
    async stop() {
      stopped = true
      wakeSleeper?.()
      await done
    },
    done,
  }
}
