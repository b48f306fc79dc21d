/** Seconds since the epoch; injected so tests can freeze time. */
export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Math.floor(Date.now() / 1000) }

export function fixedClock(epochSeconds: number): Clock {
  return { now: () => epochSeconds }
}
