import { expect, it, vi } from 'vitest'

/**
 * Lustre flattens its 128-bit file identifiers into 64-bit inode numbers around 1.4e17 (sequence << 24 plus
 * the object id), and objects made one after another get adjacent numbers. Past 2^53 a JavaScript number
 * cannot tell adjacent integers apart: read as one, a directory (or .top) swapped for one created right
 * after it would look like the same file. Two such inodes stand in for the file system here.
 */
const INODES: Record<string, bigint> = { '/creds/alice': 144115188193296385n, '/creds/alice.new': 144115188193296386n }

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>()
  const lstatSync = (path: string, opts?: { bigint?: boolean }) => {
    const ino = INODES[path]
    if (ino === undefined) return real.lstatSync(path, opts as never)
    const big = { dev: 2049n, ino, mtimeMs: 1_800_000_000_000n, mtimeNs: 1_800_000_000_000_000_000n }
    const kind = { isSymbolicLink: () => false, isDirectory: () => true, isFile: () => false }
    return opts?.bigint ? { ...big, ...kind } : { dev: 2049, ino: Number(ino), mtimeMs: 1_800_000_000_000, ...kind }
  }
  return { ...real, default: { ...real, lstatSync }, lstatSync }
})

const { nodeCredDirFs } = await import('../../src/clients/credmon/cred_dir.ts')

it('tells apart two files whose inode numbers differ by one past 2^53', () => {
  const a = nodeCredDirFs.stat('/creds/alice')
  const b = nodeCredDirFs.stat('/creds/alice.new')
  expect(a?.id).toBe('2049:144115188193296385')
  expect(b?.id).toBe('2049:144115188193296386')
  expect(a?.mtime).toBe(1_800_000_000)
})
