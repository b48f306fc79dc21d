type Path = (string | number)[]

/**
 * Where a value holds itself, or undefined. YAML lets an alias refer to the node that encloses it
 * (`&a [ *a ]`), which parses to a list that contains itself; code that walks or prints the value would
 * then never finish or fail without a position. A value merely shared by two places is fine: each list
 * or map is walked once.
 */
export function selfReferenceAt(v: unknown): Path | undefined {
  const enclosing = new Set<object>()
  const finished = new Set<object>()
  const path: Path = []
  const walk = (x: unknown): boolean => {
    if (x === null || typeof x !== 'object') return false
    if (enclosing.has(x)) return true
    if (finished.has(x)) return false
    enclosing.add(x)
    for (const [k, y] of Array.isArray(x) ? x.entries() : Object.entries(x)) {
      path.push(k)
      if (walk(y)) return true
      path.pop()
    }
    enclosing.delete(x)
    finished.add(x)
    return false
  }
  return walk(v) ? [...path] : undefined
}
