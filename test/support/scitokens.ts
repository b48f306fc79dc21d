import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/**
 * Runs a scitokens-cpp tool with `home` as its key cache (HOME and XDG_CACHE_HOME), returning its exit
 * code and combined output instead of throwing, so tests can assert on refusals too.
 */
export async function scitokensTool(tool: string, args: string[], home: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run(tool, args, { timeout: 30_000, env: { ...process.env, HOME: home, XDG_CACHE_HOME: join(home, '.cache') } })
    return { code: 0, out: `${r.stdout}${r.stderr}` }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }
  }
}
