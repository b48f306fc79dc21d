/** A file's permission bits as chmod takes them (0644, 1777), for messages that say what to change. */
export function modeString(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0')
}
