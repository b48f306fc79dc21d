/**
 * Which methods each served path answers, read from the app's own route table, so that a route added
 * anywhere is covered without code of its own (middleware/allowed_methods.ts answers the rest with 405).
 */

/** The order Allow lists methods in; the OpenAPI document (openapi/document.ts) lists them the same way. */
export const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

/**
 * The methods a resource answering `methods` supports: HEAD wherever GET is (hono answers HEAD with the GET
 * handler), unless `getMints`: a GET whose answer is a token minted and audited for it would, for HEAD,
 * make and record a token only to drop it, so such a resource answers GET alone.
 */
export function allowedMethods(methods: Iterable<string>, options: { getMints?: boolean } = {}): string[] {
  const set = new Set([...methods].map((m) => m.toUpperCase()))
  if (set.has('GET') && !options.getMints) set.add('HEAD')
  const known: readonly string[] = METHOD_ORDER
  return [...set].sort((a, b) => rank(known, a) - rank(known, b) || a.localeCompare(b))
}

function rank(order: readonly string[], m: string): number {
  const i = order.indexOf(m)
  return i < 0 ? order.length : i
}

interface PathEntry {
  /** Literal segments as themselves, `:name` parameters as undefined. */
  segments: Array<string | undefined>
  literals: number
  methods: Set<string>
  /** Its GET mints a token (MethodTable's `getMints`): no HEAD. */
  getMints: boolean
}

/** A route as hono's `app.routes` lists it; `ALL` is middleware (app.use), which serves no method of its own. */
export interface ServedRoute { method: string; path: string }

export class MethodTable {
  readonly #entries: PathEntry[] = []

  /**
   * `getMints`: route paths (as registered, `/v1/credentials/:user/:provider/token`) whose GET mints a token;
   * HEAD there is refused with 405 rather than run through the GET handler.
   */
  constructor(routes: Iterable<ServedRoute>, options: { getMints?: Iterable<string> } = {}) {
    const mints = new Set(options.getMints ?? [])
    const byPath = new Map<string, PathEntry>()
    for (const r of routes) {
      if (r.method === 'ALL' || r.path.includes('*')) continue
      let e = byPath.get(r.path)
      if (!e) {
        const segments = r.path.split('/').map((s) => (s.startsWith(':') ? undefined : s))
        e = { segments, literals: segments.filter((s) => s !== undefined).length, methods: new Set(), getMints: mints.has(r.path) }
        byPath.set(r.path, e)
        this.#entries.push(e)
      }
      e.methods.add(r.method.toUpperCase())
    }
  }

  /**
   * The methods `path` answers, in Allow order; undefined when no route serves the path at all. A concrete
   * route wins over a templated one of the same shape (OpenAPI 3.1 §4.8.8.2): /v1/revocations/condor is its
   * own resource, not an {id} of /v1/revocations/{id}.
   */
  allowed(path: string): string[] | undefined {
    const parts = path.split('/')
    let best: PathEntry[] = []
    for (const e of this.#entries) {
      if (e.segments.length !== parts.length) continue
      if (!e.segments.every((s, i) => (s === undefined ? parts[i] !== '' : s === parts[i]))) continue
      if (best.length === 0 || e.literals > best[0]!.literals) best = [e]
      else if (e.literals === best[0]!.literals) best.push(e)
    }
    if (best.length === 0) return undefined
    return allowedMethods(best.flatMap((e) => [...e.methods]), { getMints: best.some((e) => e.getMints) })
  }
}
