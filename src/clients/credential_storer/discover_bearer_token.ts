import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** Where a token was found, for messages (never the token itself). */
export interface DiscoveredToken {
  token: string
  source: string
}

/**
 * WLCG bearer-token discovery: `BEARER_TOKEN`; else the file `BEARER_TOKEN_FILE`; else
 * `$XDG_RUNTIME_DIR/bt_u<uid>` when XDG_RUNTIME_DIR is set and that file exists; else `/tmp/bt_u<uid>`.
 * Surrounding whitespace is dropped. Throws an Error naming the places looked at when none holds a token.
 * @see https://zenodo.org/records/3937438 (WLCG Bearer Token Discovery)
 */
export function discoverBearerToken(env: NodeJS.ProcessEnv, uid: number, tmp = '/tmp'): DiscoveredToken {
  const fromEnv = env.BEARER_TOKEN?.trim()
  if (fromEnv) return { token: fromEnv, source: 'BEARER_TOKEN' }
  const file = env.BEARER_TOKEN_FILE
  if (file) return { token: readToken(file, 'BEARER_TOKEN_FILE'), source: file }
  const tried: string[] = []
  if (env.XDG_RUNTIME_DIR) {
    const p = join(env.XDG_RUNTIME_DIR, `bt_u${uid}`)
    if (existsSync(p)) return { token: readToken(p, p), source: p }
    tried.push(p)
  }
  const p = join(tmp, `bt_u${uid}`)
  if (existsSync(p)) return { token: readToken(p, p), source: p }
  tried.push(p)
  throw new Error(`no bearer token: BEARER_TOKEN and BEARER_TOKEN_FILE are unset and there is no ${tried.join(' nor ')} (get one with your IAM client, e.g. oidc-token or htgettoken)`)
}

function readToken(path: string, what: string): string {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`cannot read the bearer token from ${what}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  const token = text.trim()
  if (token === '' || /\s/.test(token)) throw new Error(`${what} does not hold one bearer token`)
  return token
}
