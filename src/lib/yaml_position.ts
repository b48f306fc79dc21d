import { isMap, isNode, isScalar, type Document, type LineCounter } from 'yaml'
import type { z } from 'zod'

/**
 * Maps a zod issue back to where it is in the YAML the operator wrote, so policy files and the broker
 * config both report `FILE:LINE:COL` that an editor can jump to.
 */

type Path = readonly PropertyKey[]

/**
 * 1-based line and column of the node at `path`, or of its nearest ancestor present in the document
 * (a missing required field is reported at its parent). With `key`, the position of that key inside
 * the mapping at `path` (an unknown key points at itself, not at its parent).
 */
export function positionOf(doc: Document, lc: LineCounter, path: Path, key?: string): { line: number; col: number } {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n) as unknown[], true)
    if (!isNode(node) || !node.range) continue
    if (key !== undefined && n === path.length && isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === key)
      if (pair && isNode(pair.key) && pair.key.range) return lc.linePos(pair.key.range[0])
    }
    return lc.linePos(node.range[0])
  }
  return { line: 1, col: 1 }
}

/** The operator-facing message of a zod issue; for an unknown key, also the key to point at. */
export function zodIssueMessage(i: z.core.$ZodIssue): { message: string; key?: string } {
  if (i.code === 'unrecognized_keys') return { message: `unknown key "${i.keys[0]}"`, key: i.keys[0]! }
  return { message: i.message }
}
