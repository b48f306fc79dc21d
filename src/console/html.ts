/**
 * HTML built by a tagged template that escapes every interpolated value unless it is already Html. The
 * audit holds caller-chosen strings (subjects, reasons, request ids): escaping by default means a page can
 * only show them as text, whatever a template forgets. Values land in element content or in double-quoted
 * attributes, never in URLs' scheme position, scripts or styles (the console has neither).
 *
 * In element text, bidi controls and invisible format characters are shown as their code point
 * (⟨U+202E⟩) instead: a caller-chosen "alice<U+202E>nimda" would otherwise display as "alice" and a reversed
 * word, and one zero-width space makes two subjects look the same, so an auditor would read another value
 * than the one recorded (Unicode TR #9; "Trojan Source", CVE-2021-42574). Inside a tag (attribute values:
 * form fields the next request sends back) the value stays exact.
 */
export class Html {
  readonly value: string
  constructor(value: string) { this.value = value }
  toString(): string { return this.value }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

/**
 * What a browser draws as nothing, or as a reordering: Unicode's Default_Ignorable_Code_Point set (UAX #44,
 * which holds every bidi control, the zero-width characters, soft hyphen, fillers, variation selectors and tag
 * characters; a hand-made list misses some, and one is enough to make "alice" look like "alice"), and control
 * characters other than tab, line feed and carriage return. The u flag makes a tag character (outside the
 * BMP) one match rather than two surrogates. The label's own opening bracket U+27E8 is labelled as well, so
 * a caller who types "⟨U+200B⟩" cannot pass for one who sent a real U+200B: every "⟨" shown starts our label.
 */
const HIDDEN_FORMAT = /[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u27E8]/gu

/** Element text: escaped, and every bidi control or invisible format character named by its code point. */
export function escapeText(s: string): string {
  return escapeHtml(s).replace(HIDDEN_FORMAT, (c) => `\u27E8U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}\u27E9`)
}

function render(v: unknown, inTag: boolean): string {
  if (v instanceof Html) return v.value
  if (v === undefined || v === null || v === false) return ''
  if (Array.isArray(v)) return v.map((x) => render(x, inTag)).join('')
  return inTag ? escapeHtml(String(v)) : escapeText(String(v))
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!
  // Inside a tag when the last "<" is after the last ">": no value adds either raw (they are escaped),
  // and our own markup closes every tag it opens.
  for (let i = 0; i < values.length; i++) out += render(values[i], out.lastIndexOf('<') > out.lastIndexOf('>')) + strings[i + 1]!
  return new Html(out)
}

/** A query string from defined, non-empty values, each URL-encoded (then escaped again by html``). */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v))
  const s = q.toString()
  return s ? `?${s}` : ''
}

/** UTC date-time to the minute, as the console shows times. */
export function utc(epochSeconds: number): string {
  const d = new Date(epochSeconds * 1000)
  // A time no date can hold (a column or body edited by hand) is shown as it is, not thrown on.
  return Number.isNaN(d.getTime()) ? String(epochSeconds) : d.toISOString().slice(0, 16).replace('T', ' ')
}

/** 3d 4h, 5h 12m, 42s: an age or a remaining time at a glance. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`
  return `${s}s`
}
