import { lstatSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** Where a token was found, for messages (never the token itself). */
export interface DiscoveredToken {
  token: string
  source: string
}

/** What discovery reads of the file system; tests give their own. */
export interface TokenFiles {
  read(path: string): string
  /** The entry itself (a symlink is not followed); throws ENOENT when there is none. */
  lstat(path: string): { uid: number; mode: number; isFile: boolean }
}

const realFiles: TokenFiles = {
  read: (p) => readFileSync(p, 'utf8'),
  lstat: (p) => { const st = lstatSync(p); return { uid: st.uid, mode: st.mode, isFile: st.isFile() } },
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
 *
 * A file found at one of the two well-known places must be a plain file of this user that no one else
 * may write: anyone can create `/tmp/bt_u<uid>` for a user who has none, and a command acting with
 * someone else's token (registering that person's credential for this user's jobs) must not follow it.
 * A file named by `BEARER_TOKEN_FILE` is the user's own choice and is read as it is.
 * @see https://zenodo.org/records/3937438
 */
export function discoverBearerToken(env: NodeJS.ProcessEnv, uid: number, files: TokenFiles = realFiles, tmp = '/tmp'): DiscoveredToken {
  const fromEnv = env.BEARER_TOKEN?.trim()
  if (fromEnv) return { token: oneToken(fromEnv, 'BEARER_TOKEN'), source: 'BEARER_TOKEN' }
  if (env.BEARER_TOKEN_FILE) return { token: readToken(env.BEARER_TOKEN_FILE, files.read, true)!, source: env.BEARER_TOKEN_FILE }
  const places = [...(env.XDG_RUNTIME_DIR ? [join(env.XDG_RUNTIME_DIR, `bt_u${uid}`)] : []), join(tmp, `bt_u${uid}`)]
  for (const path of places) {
    if (!ownFile(path, uid, files)) continue
    const token = readToken(path, files.read, false)
    if (token !== undefined) return { token, source: path }
  }
  throw new Error(`no bearer token: set BEARER_TOKEN or BEARER_TOKEN_FILE, or write ${places.join(' or ')} (WLCG bearer token discovery; get one with your IAM client, e.g. oidc-token or htgettoken)`)
}

/** False when there is nothing at `path`; throws when what is there is not this user's plain file. */
function ownFile(path: string, uid: number, files: TokenFiles): boolean {
  let st: ReturnType<TokenFiles['lstat']>
  try {
    st = files.lstat(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return false
    throw new Error(`cannot read the bearer token file ${path}: ${code ?? 'error'}`)
  }
  if (!st.isFile) throw new Error(`the bearer token file ${path} is not a plain file (a symlink?); refusing it`)
  if (st.uid !== uid) throw new Error(`the bearer token file ${path} belongs to uid ${st.uid}, not to you (uid ${uid}); refusing it`)
  if ((st.mode & 0o022) !== 0) throw new Error(`the bearer token file ${path} is writable by others (mode ${(st.mode & 0o777).toString(8)}); refusing it`)
  return true
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
