import { createHmac } from 'node:crypto'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { deriveIdTokenKey } from '../../src/keys/condor_key_file.ts'
import type { KeyStore } from '../../src/keys/key_store.ts'

/**
 * The SLURM tests' stand-in for condor_master (Debian does not package HTCondor), written to `dir/recorder`: it
 * logs every token version it finds in the pilot's token directory, and the SIGTERM that drains it, to
 * `dir/rec-<job>-<node>.log`. Bounded (300 s).
 */
export function recorder(dir: string): string {
  const file = join(dir, 'recorder')
  writeFileSync(file, `#!/bin/bash
# Records each token version in the pilot's token directory, and the SIGTERM that drains it. Bounded (300 s).
# The TERM trap only sets a flag and the loop forks nothing but sleep: a trap that forks (date, cat) can race
# a second SIGTERM (SLURM signals every process of the step, and the pilot signals its command too).
out="$(dirname "$0")/rec-$SLURM_JOB_ID-$SLURMD_NODENAME.log"
tokens=$(dirname "$CONDOR_CONFIG")/tokens.d
stop=
trap 'stop=1' TERM
printf -v now '%(%s)T' -1
echo "start $now" >> "$out"
last=
for (( i = 0; i < 3000 && ! stop; i++ )); do
  cur=
  [[ -f $tokens/pilot ]] && IFS= read -r cur < "$tokens/pilot"
  if [[ -n $cur && $cur != "$last" ]]; then printf -v now '%(%s)T' -1; echo "token $now $(stat -c %a "$tokens/pilot") $cur" >> "$out"; last=$cur; fi
  (( stop )) || { sleep 0.1 & wait $!; }
done
printf -v now '%(%s)T' -1
# It exits at once: SLURM signals it and the node's task together, the race the pilot's status file is for
# (docs/pilots-script.md).
if (( stop )); then echo "term $now" >> "$out"; exit 0; fi
echo "gave-up $now" >> "$out"
exit 99
`)
  chmodSync(file, 0o755)
  return file
}

export interface Recorded { term?: number; tokens: { at: number; mode: string; token: string }[] }

export function readRecord(file: string): Recorded {
  if (!existsSync(file)) return { tokens: [] }
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '))
  const term = lines.find((l) => l[0] === 'term')
  return {
    ...(term ? { term: Number(term[1]) } : {}),
    tokens: lines.filter((l) => l[0] === 'token').map((l) => ({ at: Number(l[1]), mode: l[2]!, token: l[3]! })),
  }
}

/** scontrol prints local ISO times without a zone; the pilot reads squeue's the same way (date -d). */
export const epoch = (local: string) => Math.floor(new Date(local).getTime() / 1000)

/**
 * HTCondor's IDTOKEN check: HMAC-SHA256 under the key derived from the pool's key file named by `kid` (the
 * derivation is pinned by test/unit/idtoken_vector.test.ts to condor_token_create's bytes).
 */
export function verifiesWithPoolKey(token: string, keys: KeyStore, kid: string): boolean {
  const [h, p, s] = token.split('.')
  if (JSON.parse(Buffer.from(h!, 'base64url').toString()).kid !== kid) return false
  const mac = createHmac('sha256', deriveIdTokenKey(readFileSync(keys.condorKeyPath(kid)), kid)).update(`${h}.${p}`).digest('base64url')
  return mac === s
}

export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not in ${ms} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
