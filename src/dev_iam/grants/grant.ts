import type { TokenEndpointGrantContext } from 'oidc-provider'
import type { DevIamContext } from '../dev_iam_context.ts'

/** One grant of the development IAM, in oidc-provider's grant shape: registered with `provider.registerGrantType`. */
export interface DevIamGrant {
  grantType: string
  /** Form parameters the grant reads besides grant_type and client authentication. */
  parameters: readonly string[]
  /** Parameters that may repeat. */
  repeatable: readonly string[]
  handler(dev: DevIamContext): (ctx: TokenEndpointGrantContext) => Promise<void>
}

/** RFC 6749 §5.1 success body as IAM sends it; oidc-provider's token route already set Cache-Control: no-store. */
export interface TokenResponse {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  scope?: string
  refresh_token?: string
  issued_token_type?: string
}
