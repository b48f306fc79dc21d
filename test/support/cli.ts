import { runCli } from '../../src/cli/main.ts'

/** Runs the CLI in-process with captured output and the given environment. */
export async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(args, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}
