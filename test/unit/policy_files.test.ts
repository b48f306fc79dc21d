import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { formatIssue, loadPolicyDir } from '../../src/policy/load.ts'
import { tempDir } from '../support/tmp.ts'

const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'pool.example.org', vars: {}, scitokenProfile: 'wlcg', maxLifetime: {} }

/** A directory holding one valid (empty) policy file, beside which each test puts something that is not one. */
function policyDir(): string {
  const dir = tempDir()
  writeFileSync(join(dir, '00-base.yaml'), 'version: 1\nrules: []\n')
  return dir
}

function messages(dir: string): string[] {
  const r = loadPolicyDir(dir, CTX)
  return r.ok ? [] : r.issues.map(formatIssue)
}

// A policy directory is read on the event loop at every reload: whatever sits in it under a policy file's name
// must be refused in bounded time and memory, and never be skipped as though it were not there (its rules would
// silently drop out of the policy in force).
describe('policy files that are not regular files', () => {
  it('refuses a FIFO behind a *.yaml symlink at once instead of waiting for a writer', async () => {
    const dir = policyDir()
    const fifo = join(dir, 'pipe')
    execFileSync('mkfifo', [fifo])
    symlinkSync(fifo, join(dir, '10-rules.yaml'))
    // A writer that opens the FIFO for 2 s bounds the test if the loader blocks on it (then it reads nothing).
    const writer = spawn('sh', ['-c', `sleep 2 > '${fifo}'`], { stdio: 'ignore' })
    try {
      const t = Date.now()
      const got = messages(dir)
      expect(Date.now() - t).toBeLessThan(1000)
      expect(got).toEqual([`${join(dir, '10-rules.yaml')}: not a regular file; a policy file is a regular file (or a symlink to one)`])
    } finally {
      writer.kill()
    }
  })

  it('refuses a character device behind a *.yaml symlink (/dev/zero would be read without end)', () => {
    const dir = policyDir()
    symlinkSync('/dev/null', join(dir, '10-rules.yaml'))
    expect(messages(dir)).toEqual([`${join(dir, '10-rules.yaml')}: not a regular file; a policy file is a regular file (or a symlink to one)`])
  })

  it('refuses a directory named like a policy file, rather than leaving its name out of the policy', () => {
    const dir = policyDir()
    mkdirSync(join(dir, '10-rules.yaml'))
    expect(messages(dir)).toEqual([`${join(dir, '10-rules.yaml')}: not a regular file; a policy file is a regular file (or a symlink to one)`])
  })

  it('refuses a file above 1 MiB without parsing it', () => {
    const dir = policyDir()
    const big = join(dir, '10-rules.yaml')
    writeFileSync(big, 'version: 1\nrules: []\n')
    truncateSync(big, 1024 * 1024 + 1) // the tail is NUL bytes: never parsed
    expect(messages(dir)).toEqual([`${big}: 1048577 bytes, above the 1048576 a policy file may hold`])
  })

  it('still reads a file of exactly 1 MiB', () => {
    const dir = policyDir()
    const text = 'version: 1\nrules: []\n'
    writeFileSync(join(dir, '10-rules.yaml'), text + '#'.repeat(1024 * 1024 - text.length - 1) + '\n')
    expect(loadPolicyDir(dir, CTX).ok).toBe(true)
  })
})

// Whoever can write a policy can grant any role to anyone, themselves included: a file or directory any
// user on the host may write is refused (as sshd's StrictModes refuses such files), at start-up and at a
// reload, which then keeps the policy in force. Group write stays allowed (an admins' group that edits them).
describe('policy files and directories any user may write', () => {
  it('refuses a policy file writable by other users, naming the mode and the fix', () => {
    const dir = policyDir()
    const file = join(dir, '10-rules.yaml')
    writeFileSync(file, 'version: 1\nrules: []\n')
    chmodSync(file, 0o666)
    expect(messages(dir)).toEqual([`${file}: writable by every user (mode 0666), who could grant themselves any role; chmod o-w ${file}`])
  })

  it('refuses a policy directory writable by other users, where anyone could add a file, even with the sticky bit', () => {
    for (const mode of [0o777, 0o1777]) {
      const dir = policyDir()
      chmodSync(dir, mode)
      expect(messages(dir)).toEqual([`${dir}: policy directory writable by every user (mode ${mode.toString(8).padStart(4, '0')}), who could add a policy file granting any role; chmod o-w ${dir}`])
    }
  })

  it('still reads group-writable files in a group-writable directory', () => {
    const dir = policyDir()
    chmodSync(join(dir, '00-base.yaml'), 0o664)
    chmodSync(dir, 0o2775)
    expect(loadPolicyDir(dir, CTX).ok).toBe(true)
  })
})

// A policy file of mode 0644 is as open as its directory: in one every user may write (without the sticky bit,
// which keeps others from renaming over a file they do not own) anyone can rename a file of their own over it.
// policy_dir itself is checked above; a link out of it names a file in another directory, checked here.
describe('policy files linked from a directory any user may write', () => {
  it('refuses a link to a file in a directory every user may write, naming the directory and the fix', () => {
    const dir = policyDir()
    const shared = tempDir()
    writeFileSync(join(shared, 'rules.yaml'), 'version: 1\nrules: []\n', { mode: 0o644 })
    chmodSync(shared, 0o777)
    symlinkSync(join(shared, 'rules.yaml'), join(dir, '10-rules.yaml'))
    expect(messages(dir)).toEqual([`${join(dir, '10-rules.yaml')}: names ${join(shared, 'rules.yaml')}, under ${shared}, a directory every user may write (mode 0777), where anyone could put a file of their own in its place; chmod o-w ${shared}`])
  })

  // A link to a link: the second one sits in the shared directory, the file it names elsewhere. Anyone may
  // rename a link of their own over the second one, to a file in a directory of their own, so the directory
  // of every link on the way counts, not only those above the path as written and above the file at its end.
  // The path at the end of the links is whatever the one who may write the shared directory made it: put as
  // it is on the terminal of an admin running `policy check`, an escape in it would rewrite what they read.
  it('shows a path named by a link in such a directory with its control characters escaped', () => {
    const dir = policyDir()
    const shared = tempDir()
    const theirs = join(tempDir(), 'e\x1b]2;x\x07')
    mkdirSync(theirs)
    writeFileSync(join(theirs, 'rules.yaml'), 'version: 1\nrules: []\n', { mode: 0o644 })
    symlinkSync(join(theirs, 'rules.yaml'), join(shared, 'current.yaml'))
    chmodSync(shared, 0o777)
    symlinkSync(join(shared, 'current.yaml'), join(dir, '10-rules.yaml'))
    const shownTheirs = `"${dirname(theirs)}/e\\u001b]2;x\\u0007/rules.yaml"`
    expect(messages(dir)).toEqual([`${join(dir, '10-rules.yaml')}: names ${shownTheirs}, by way of ${shared}, a directory every user may write (mode 0777), where anyone could put a file of their own in its place; chmod o-w ${shared}`])
  })

  it('refuses a link through a link in a directory every user may write, though the file it ends at is in a safe one', () => {
    const dir = policyDir()
    const shared = tempDir()
    const safe = tempDir()
    writeFileSync(join(safe, 'rules.yaml'), 'version: 1\nrules: []\n', { mode: 0o644 })
    symlinkSync(join(safe, 'rules.yaml'), join(shared, 'current.yaml'))
    chmodSync(shared, 0o777)
    symlinkSync(join(shared, 'current.yaml'), join(dir, '10-rules.yaml'))
    expect(messages(dir)).toEqual([`${join(dir, '10-rules.yaml')}: names ${join(safe, 'rules.yaml')}, by way of ${shared}, a directory every user may write (mode 0777), where anyone could put a file of their own in its place; chmod o-w ${shared}`])
  })

  it('reads a link to a file in a directory with the sticky bit (others cannot rename over it), or only group-writable', () => {
    for (const mode of [0o1777, 0o2775]) {
      const dir = policyDir()
      const shared = tempDir()
      writeFileSync(join(shared, 'rules.yaml'), 'version: 1\nrules: []\n', { mode: 0o644 })
      chmodSync(shared, mode)
      symlinkSync(join(shared, 'rules.yaml'), join(dir, '10-rules.yaml'))
      expect(loadPolicyDir(dir, CTX).ok).toBe(true)
    }
  })
})

// Whoever may rename entries in a directory above policy_dir may put a directory of their own in its place,
// whatever policy_dir's own mode: every directory on the way to it counts, as sshd's StrictModes walks the path.
describe('a policy directory under a directory any user may write', () => {
  it('refuses it, naming the directory above and the fix', () => {
    const shared = tempDir()
    const dir = join(shared, 'site', 'policies')
    mkdirSync(dir, { recursive: true, mode: 0o755 })
    writeFileSync(join(dir, '00-base.yaml'), 'version: 1\nrules: []\n', { mode: 0o644 })
    chmodSync(shared, 0o777)
    expect(messages(dir)).toEqual([`${dir}: policy directory under ${shared}, a directory every user may write (mode 0777), where anyone could put a directory of their own in its place; chmod o-w ${shared}`])
    chmodSync(shared, 0o1777)
    expect(loadPolicyDir(dir, CTX).ok).toBe(true)
  })

  // policy_dir is not below the open directory here, only reached through a link kept in it: "under" would send
  // the admin looking for the directory in the wrong place, as the files' and broker.yaml's messages do not.
  it('says a directory holding a link on the way is on the way, not above it', () => {
    const shared = tempDir()
    const dir = join(tempDir(), 'policies')
    mkdirSync(dir, { mode: 0o755 })
    writeFileSync(join(dir, '00-base.yaml'), 'version: 1\nrules: []\n', { mode: 0o644 })
    symlinkSync(dir, join(shared, 'current'))
    chmodSync(shared, 0o777)
    const named = join(shared, 'current')
    expect(messages(named)).toEqual([`${named}: policy directory names ${dir}, by way of ${shared}, a directory every user may write (mode 0777), where anyone could put a directory of their own in its place; chmod o-w ${shared}`])
  })
})

// `..` after a link goes up from where the link led (POSIX path resolution), not from where the text was: the
// kernel opens such a path, and the checks on it must find the same directories rather than refuse it as absent.
describe('a policy_dir named through a link and ..', () => {
  it('reads it as the kernel finds it', () => {
    const root = tempDir()
    mkdirSync(join(root, 'a', 'b'), { recursive: true })
    const dir = join(root, 'real', 'policies')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, '00-base.yaml'), 'version: 1\nrules: []\n')
    symlinkSync(join(root, 'a', 'b'), join(root, 'lnk'))
    // lnk/.. is a, a/.. is root: the text alone would make it root's parent's real/policies.
    expect(messages(`${root}/lnk/../../real/policies`)).toEqual([])
  })
})
