import type { z } from 'zod'
import { InvalidRequest } from '../errors.ts'
import { cutTokens } from '../lib/cut_tokens.ts'

/** The most of a caller's field name an answer repeats; the API's own names are far shorter. */
const MAX_NAME_CHARS = 64

/**
 * A field or parameter name the caller sent, fit to repeat in the answer: a client that put its token where a
 * name goes (a JSON key, a misbuilt form) would otherwise have it copied whole into the refusal, and from there
 * into its own logs and a proxy's.
 */
export function shownName(name: string): string {
  // Characters outside RFC 6749's description set are the wire's to replace (toErrorDescription).
  const cut = cutTokens(name)
  return cut.length > MAX_NAME_CHARS ? `${cut.slice(0, MAX_NAME_CHARS)}...` : cut
}

/**
 * Parses `raw` with `schema`, the one way every JSON body and query of the API is refused: the first issue
 * becomes one invalid_request line naming the unknown field or parameter, or the bad one and why.
 */
export function parseOrRefuse<T extends z.ZodType>(schema: T, raw: unknown, noun: 'field' | 'parameter'): z.output<T> {
  const parsed = schema.safeParse(raw)
  if (parsed.success) return parsed.data
  const i = parsed.error.issues[0]!
  // A nested object's unknown key is named with the path to it (`subject.sneaky`).
  if (i.code === 'unrecognized_keys') throw new InvalidRequest(`unknown ${noun} ${[...i.path, i.keys[0]!].map((p) => shownName(String(p))).join('.')}`)
  throw new InvalidRequest(`${i.path.map((p) => shownName(String(p))).join('.') || (noun === 'field' ? 'body' : '')}: ${i.message}`)
}
