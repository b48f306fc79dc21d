import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** Where a token was found, for messages (never the token itself). */
export interface DiscoveredToken {
  token: string
  source: string
}

/**
 * WLCG Bearer Token Discovery (version 1.0), as every client command of the broker reads the caller's
 * IAM token: `BEARER_TOKEN`; else the file named by `BEARER_TOKEN_FILE`; else `$XDG_RUNTIME_DIR/bt_u<uid>`;
 * else `/tmp/bt_u<uid>`. Surrounding whitespace is dropped.
 *
 * Only a place that does not exist passes the search on: a file named by `BEARER_TOKEN_FILE` that is
 * missing, and any file found that cannot be read, is empty or holds more than one word, is an error.
 * Falling through to the next place would quietly act with another identity's token (an old
 * `/tmp/bt_u<uid>` under a broken `$XDG_RUNTIME_DIR` one).
 * @see https://zenodo.org/records/3937438
 */
export function discoverBearerToken(env: NodeJS.ProcessEnv, uid: number, read: (path: string) => string = (p) => readFileSync(p, 'utf8'), tmp = '/tmp'): DiscoveredToken {
  const fromEnv = env.BEARER_TOKEN?.trim()
  if (fromEnv) return { token: oneToken(fromEnv, 'BEARER_TOKEN'), source: 'BEARER_TOKEN' }
  if (env.BEARER_TOKEN_FILE) return { token: readToken(env.BEARER_TOKEN_FILE, read, true)!, source: env.BEARER_TOKEN_FILE }
  const places = [...(env.XDG_RUNTIME_DIR ? [join(env.XDG_RUNTIME_DIR, `bt_u${uid}`)] : []), join(tmp, `bt_u${uid}`)]
  for (const path of places) {
    const token = readToken(path, read, false)
    if (token !== undefined) return { token, source: path }
  }
  throw new Error(`no bearer token: set BEARER_TOKEN or BEARER_TOKEN_FILE, or write ${places.join(' or ')} (WLCG bearer token discovery; get one with your IAM client, e.g. oidc-token or htgettoken)`)
}

/** The token in `path`; undefined only when the file does not exist and `required` is false. */
function readToken(path: string, read: (path: string) => string, required: boolean): string | undefined {
  let text: string
  try {
    text = read(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (!required && code === 'ENOENT') return undefined
    throw new Error(`cannot read the bearer token file ${path}: ${code ?? 'error'}`)
  }
  return oneToken(text.trim(), `the bearer token file ${path}`)
}

function oneToken(token: string, what: string): string {
  if (token === '' || /\s/.test(token)) throw new Error(`${what} does not hold one bearer token`)
  return token
}
