import { expect, it } from 'vitest'
import { LoopTurns } from '../../src/storage/loop_turns.ts'

// Retention's timer fires with the periodic check's, so its pre-prune walk and the check run together, each
// turning after CHECK_SLICE_MS. Immediates queued in one turn of the loop all run in the next one, back to
// back: two walks turning in the same turn would run a slice each with no I/O polled between them, a stretch
// of twice CHECK_SLICE_MS. Turns taken together must resume in successive turns of the loop.
it('two walks that turn together resume in successive turns of the event loop', async () => {
  let loopTurn = 0
  let running = true
  const count = () => { loopTurn++; if (running) setImmediate(count) }
  setImmediate(count)
  const check = new LoopTurns()
  const prune = new LoopTurns()
  const resumedAt: number[] = []
  await Promise.all([check.turn().then(() => resumedAt.push(loopTurn)), prune.turn().then(() => resumedAt.push(loopTurn))])
  running = false
  // Queued behind the counter: the first walk resumes in the counter's first turn, the second in the next.
  expect(resumedAt).toEqual([1, 2])
})
