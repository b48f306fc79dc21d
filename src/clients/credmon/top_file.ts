import { CREDENTIAL_NAME_PATTERN, USER_PATTERN, type BrokerTop } from '../../contract/job_credentials.ts'

/**
 * The most of a `.top` the credmon reads. One the storer writes is a few hundred bytes (a broker URL, a user,
 * a provider, scopes and an audience); a larger file is not ours, and is not read further.
 */
export const MAX_TOP_BYTES = 64 * 1024

/**
 * Reads a `.top` written for our credmon (registration mode "broker"); undefined when it is not one: a
 * Vault or OAuth credmon's file, or junk. The credd stores what the submitting user's storer produced,
 * so every field is checked before the credmon acts on it.
 */
export function parseBrokerTop(text: string): BrokerTop | undefined {
  let j: unknown
  try { j = JSON.parse(text) } catch { return undefined }
  if (typeof j !== 'object' || j === null) return undefined
  const t = j as Record<string, unknown>
  if (typeof t.broker_url !== 'string' || typeof t.user !== 'string' || typeof t.provider !== 'string') return undefined
  if (!USER_PATTERN.test(t.user) || !CREDENTIAL_NAME_PATTERN.test(t.provider)) return undefined
  if (t.scopes !== undefined && typeof t.scopes !== 'string') return undefined
  if (t.audience !== undefined && typeof t.audience !== 'string') return undefined
  return {
    broker_url: t.broker_url, user: t.user, provider: t.provider,
    ...(typeof t.scopes === 'string' ? { scopes: t.scopes } : {}),
    ...(typeof t.audience === 'string' ? { audience: t.audience } : {}),
  }
}
