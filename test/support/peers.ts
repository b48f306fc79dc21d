import { execFileSync } from 'node:child_process'

/** Fails (never skips) when an interop peer is missing, naming the Debian package to install. */
export function requireTool(command: string, debianPackage: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error(`${command} not found: install the Debian package ${debianPackage} (apt-get install ${debianPackage})`)
  }
}

export { freePort } from '../../src/lib/free_port.ts'
