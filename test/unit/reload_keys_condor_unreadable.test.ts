import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { KeyHolder } from '../../src/keys/key_holder.ts'
import { reloadSigningKeys } from '../../src/keys/reload_keys.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { systemClock } from '../../src/lib/clock.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { tempDir } from '../support/tmp.ts'

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => { lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`) }
  return { lines, info: at('info'), warn: at('warn'), error: at('error') }
}

// The HTCondor key is kept in force on reload (it also keys the anchor seals). A key file on disk that
// differs is taken up at the next restart, and the reload says so. An HTCondor key file the broker can no
// longer read (chmod 644, or a copy left root's) is another matter: the next start refuses it. The reload
// must say that, not that a different key "takes effect at the next restart".
describe('a SIGHUP key reload with the HTCondor key file unreadable', () => {
  it('says the file cannot be read and that the next start would fail, and does not claim a new key', async () => {
    const config = loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const loaded = ensureAndLoadKeys(config, systemClock.now())
    const holder = new KeyHolder(loaded.keys)
    const keyFile = loaded.store.condorKeyPath(config.idtoken.key)
    chmodSync(keyFile, 0o644)
    const log = recordingLogger()
    const r = await reloadSigningKeys(holder, 'sighup', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: systemClock, log })
    expect(r.ok).toBe(true)
    expect(log.lines.filter((l) => l.includes('takes effect at the next restart'))).toEqual([])
    expect(log.lines).toContainEqual(expect.stringMatching(new RegExp(`^error the HTCondor \\(IDTOKEN\\) key file cannot be read; the key in force keeps signing, but serve will not start until it can .*"error":"${keyFile} has mode 0644`)))
    expect(r.ok && r.idtokenUnreadable).toMatch(/has mode 0644/)

    // A readable file with other bytes is still the next-restart warning.
    chmodSync(keyFile, 0o600)
    writeFileSync(keyFile, Buffer.alloc(64, 7), { mode: 0o600 })
    const again = recordingLogger()
    await reloadSigningKeys(holder, 'sighup', { config, selfTest: () => {}, audit: { record: async () => undefined }, clock: systemClock, log: again })
    expect(again.lines).toContainEqual(expect.stringMatching(/^warn the HTCondor \(IDTOKEN\) key on disk differs from the one in force; it takes effect at the next restart/))
  })
})
