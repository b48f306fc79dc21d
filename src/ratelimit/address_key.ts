/**
 * The key the address limit counts a client under. An IPv4 address is its own key. An IPv6 address is
 * keyed by its network prefix (default /64): every IPv6 end site is given at least a /64, so one host can
 * take a fresh address for each request, and counting per exact address would never stop it. An
 * IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, how a dual-stack socket reports an IPv4 peer) is the IPv4
 * address it carries. Textual forms are normalised (`2001:DB8::1` and `2001:0db8:0:0::2` share a /64).
 *
 * Hand-written rather than through node:net (SocketAddress, BlockList): those validate and match, but give
 * neither the groups of an address nor its prefix as text, and a parse here is a few string operations.
 * Anything that does not parse (no socket address looks like that) is keyed as it is.
 */
export function addressKeyer(ipv6Prefix: number): (address: string) => string {
  return (address) => {
    // IPv4, the common case, costs one scan for a colon.
    if (!address.includes(':')) return address
    const groups = ipv6Groups(address)
    if (groups === undefined) return address
    if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
      return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`
    }
    let key = ''
    for (let i = 0; i < 8; i++) {
      const keep = Math.max(0, Math.min(16, ipv6Prefix - 16 * i))
      const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff
      key += (i === 0 ? '' : ':') + (groups[i]! & mask).toString(16)
    }
    return `${key}/${ipv6Prefix}`
  }
}

const HEX_GROUP = /^[0-9a-f]{1,4}$/i
const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

/** The eight 16-bit groups of an IPv6 address in any textual form (zone index ignored), or undefined. */
export function ipv6Groups(text: string): number[] | undefined {
  const zone = text.indexOf('%')
  const address = zone === -1 ? text : text.slice(0, zone)
  const halves = address.split('::')
  if (halves.length > 2) return undefined
  const head = parseGroups(halves[0]!, halves.length === 1)
  const tail = halves.length === 2 ? parseGroups(halves[1]!, true) : []
  if (head === undefined || tail === undefined) return undefined
  const missing = 8 - head.length - tail.length
  // `::` stands for at least one group of zeros; without it there must be exactly eight.
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  return [...head, ...Array<number>(missing).fill(0), ...tail]
}

/** Groups of one side of `::`; only the last side may end in a dotted IPv4 address (two groups). */
function parseGroups(part: string, last: boolean): number[] | undefined {
  if (part === '') return []
  const fields = part.split(':')
  const groups: number[] = []
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!
    if (HEX_GROUP.test(f)) {
      groups.push(parseInt(f, 16))
      continue
    }
    const v4 = last && i === fields.length - 1 ? DOTTED.exec(f) : null
    if (!v4) return undefined
    const b = v4.slice(1).map(Number)
    if (b.some((n) => n > 255)) return undefined
    groups.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!)
  }
  return groups.length > 8 ? undefined : groups
}
