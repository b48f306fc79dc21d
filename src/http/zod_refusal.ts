import type { z } from 'zod'
import { InvalidRequest } from '../errors.ts'

/**
 * Parses `raw` with `schema`, the one way every JSON body and query of the API is refused: the first issue
 * becomes one invalid_request line naming the unknown field or parameter, or the bad one and why.
 */
export function parseOrRefuse<T extends z.ZodType>(schema: T, raw: unknown, noun: 'field' | 'parameter'): z.output<T> {
  const parsed = schema.safeParse(raw)
  if (parsed.success) return parsed.data
  const i = parsed.error.issues[0]!
  if (i.code === 'unrecognized_keys') throw new InvalidRequest(`unknown ${noun} ${i.keys[0]}`)
  throw new InvalidRequest(`${i.path.join('.') || (noun === 'field' ? 'body' : '')}: ${i.message}`)
}
