import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

// The broker's Node options (heap sizing) live on the first line of its bin, so every launcher must
// execute the bin itself: `node <bin>` would skip that line.
const ROOT = join(import.meta.dirname, '../..')
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8')

describe('launchers', () => {
  it('the bin carries the heap options and the malloc arena limit on its first line, through env -S', () => {
    const line = read('bin/condor-token-broker.js').split('\n')[0]!.match(/^#!\/usr\/bin\/env -S ((?:[A-Z_]+=\S+ )*)node((?: --[a-z-]+(?:=\S+)?)*)$/)
    expect(line, 'first line').not.toBeNull()
    expect(line![1]!.trim().split(' ')).toEqual(['MALLOC_ARENA_MAX=2'])
    expect(line![2]!.trim().split(' ')).toEqual(expect.arrayContaining([expect.stringMatching(/^--max-semi-space-size=\d+$/), '--no-allocation-site-pretenuring']))
  })

  it('npm start, the container and the systemd unit execute the bin, not node with it', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string> }
    expect(pkg.bin['condor-token-broker']).toBe('bin/condor-token-broker.js')
    expect(pkg.scripts.start).toBe('./bin/condor-token-broker.js serve')
    expect(read('Dockerfile')).toMatch(/^ENTRYPOINT \["\/app\/bin\/condor-token-broker\.js"\]$/m)
    expect(read('packaging/condor-token-broker.service')).toMatch(/^ExecStart=\/usr\/bin\/condor-token-broker serve /m)
  })
})
