import { replaceFileAtomic } from '../lib/secure_file.ts'

/**
 * Replaces a HTCondor config snippet atomically, mode 0644 so the daemons can read it. The temp name
 * starts with '.', which LOCAL_CONFIG_DIR_EXCLUDE_REGEXP skips by default (docs/htcondor-tokens.md §1.1), so a
 * daemon reconfiguring mid-write never reads half a file. The directory must already exist: HTCondor
 * reads only the directories LOCAL_CONFIG_DIR names, and one created here for a mistyped path would hold
 * a revocation no daemon ever reads.
 */
export function writeCondorConfigAtomic(path: string, text: string): void {
  replaceFileAtomic(path, text, 0o644)
}
