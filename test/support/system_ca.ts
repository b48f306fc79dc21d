import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'

const CA_DIR = '/usr/local/share/ca-certificates'

/**
 * Adds a CA to the Debian system trust store, which libcurl (and so scitokens-cpp 0.7.3, which has no
 * CA-file option) uses (docs/htcondor-tokens.md §5.3). Returns a function that removes it again.
 */
export function trustSystemCa(caFile: string): () => void {
  if (!existsSync('/usr/sbin/update-ca-certificates')) {
    throw new Error('update-ca-certificates not found: install the Debian package ca-certificates')
  }
  if (process.getuid?.() !== 0) throw new Error('adding a test CA to the system trust store needs root (CI runs as root)')
  const target = `${CA_DIR}/ctb-test-${randomBytes(4).toString('hex')}.crt`
  copyFileSync(caFile, target)
  execFileSync('update-ca-certificates', { stdio: 'ignore' })
  return () => {
    rmSync(target, { force: true })
    execFileSync('update-ca-certificates', ['--fresh'], { stdio: 'ignore' })
  }
}
