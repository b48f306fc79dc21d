/**
 * The promise's value, or undefined when it has not settled within `ms`; its rejection is passed on. The
 * timer is cleared either way, so a promise that settles in time leaves nothing holding the process.
 */
export async function withinMs<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms) })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}
