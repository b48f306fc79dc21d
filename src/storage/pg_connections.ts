import pg from 'pg'
import { withinMs } from '../lib/within_ms.ts'

/**
 * A pg pool whose connections can be cut. pg ends a connection by sending Terminate and waiting for the
 * server to close the socket, and pool.end() waits for the connections still busy; a server that stopped
 * answering without closing anything (its processes stopped, a network black hole: the kernel at the far
 * end, or nobody, acknowledges) does neither, so the busy ones hold the end forever, and the socket of an
 * idle one that was ended stays open, holding the process after everything else has closed.
 */
export interface CuttablePool {
  readonly pool: pg.Pool
  /** Ends the pool (once, whoever asks), resolving when every connection's socket has closed. */
  end(): Promise<void>
  /** Destroys the socket of every connection still open: what waits on one fails at once. How many were open. */
  cut(): number
  /** end(), cutting what is still open after `ms`; how many connections were cut (0: the server answered). */
  endWithin(ms: number): Promise<number>
}

export function cuttablePool(config: pg.PoolConfig): CuttablePool {
  const open = new Set<pg.Client>()
  let emptied: Array<() => void> = []
  // Every connection the pool makes, from before it connects until its socket has closed.
  class TrackedClient extends pg.Client {
    constructor(options?: string | pg.ClientConfig) {
      super(options)
      open.add(this)
      this.once('end', () => {
        open.delete(this)
        if (open.size === 0) { const waiting = emptied; emptied = []; for (const f of waiting) f() }
      })
    }
  }
  // pg-pool constructs it with the pool's options; the type declares no argument.
  const pool = new pg.Pool({ ...config, Client: TrackedClient as unknown as new () => pg.ClientBase })
  let ended: Promise<void> | undefined
  const end = () => {
    ended ??= pool.end().then(() => open.size === 0 ? undefined : new Promise<void>((resolve) => { emptied.push(resolve) }))
    return ended
  }
  const cut = () => {
    let n = 0
    for (const client of open) {
      const socket = client.connection.stream
      if (socket.destroyed) continue
      n++
      socket.destroy()
    }
    return n
  }
  const endWithin = async (ms: number) => {
    const gone = end()
    if (await withinMs(gone.then(() => true), ms)) return 0
    const n = cut()
    await gone
    return n
  }
  return { pool, end, cut, endWithin }
}
