import { readFileSync } from 'node:fs'

/**
 * WLCG bearer token discovery (WLCG Bearer Token Discovery, version 1.0): the first of `BEARER_TOKEN`,
 * the file named by `BEARER_TOKEN_FILE`, `$XDG_RUNTIME_DIR/bt_u$UID`, `/tmp/bt_u$UID`. Surrounding
 * whitespace is stripped. Returns where it came from, never logging the token itself.
 */
export function discoverBearerToken(env: NodeJS.ProcessEnv, uid: number, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): { token: string; source: string } {
  const fromEnv = env.BEARER_TOKEN?.trim()
  if (fromEnv) return { token: fromEnv, source: 'BEARER_TOKEN' }
  const candidates: string[] = []
  // An explicitly named file that is missing is an error, not a reason to try the next place.
  if (env.BEARER_TOKEN_FILE) {
    return { token: readToken(env.BEARER_TOKEN_FILE, read, true)!, source: env.BEARER_TOKEN_FILE }
  }
  if (env.XDG_RUNTIME_DIR) candidates.push(`${env.XDG_RUNTIME_DIR}/bt_u${uid}`)
  candidates.push(`/tmp/bt_u${uid}`)
  for (const path of candidates) {
    const token = readToken(path, read, false)
    if (token) return { token, source: path }
  }
  throw new Error(`no bearer token: set BEARER_TOKEN or BEARER_TOKEN_FILE, or write ${candidates.join(' or ')} (WLCG bearer token discovery)`)
}

function readToken(path: string, read: (path: string) => string, required: boolean): string | undefined {
  let text: string
  try {
    text = read(path)
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`cannot read the bearer token file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  const token = text.trim()
  if (!token) {
    if (required) throw new Error(`the bearer token file ${path} is empty`)
    return undefined
  }
  return token
}
