import type { KeyObject } from 'node:crypto'
import type { Clock } from '../lib/clock.ts'
import type { DevIamClient, DevIamConfig, DevIamUser } from './dev_iam_config.ts'
import type { TokenStore } from './token_store.ts'
import type { PendingCodes } from './authorization_code.ts'

/** Everything the development IAM's grants, introspection and revocation share; built once at start-up. */
export interface DevIamContext {
  /** Exact `iss`, trailing slash included, as IAM's discovery shows it (docs/iam-and-wlcg.md §1.2). */
  issuer: string
  config: DevIamConfig
  clients: ReadonlyMap<string, DevIamClient>
  /** By username. */
  users: ReadonlyMap<string, DevIamUser>
  store: TokenStore
  /** RS256 private key; its public half is what oidc-provider serves at /jwk. */
  signingKey: KeyObject
  kid: string
  clock: Clock
  /** Authorization codes from the development login page, until redeemed or expired. */
  codes: PendingCodes
  /** `aud` of a token whose client asked for no audience: IAM's WLCG "any" unless configured. */
  defaultAudience: string
}
