import { writeSecretFileAtomic } from '../lib/secure_file.ts'
import { GRANT, type DevIamConfigInput } from './dev_iam_config.ts'
import type { RunningDevIam } from './start_dev_iam.ts'

/** What the broker needs to trust the development IAM and act as its own client there. */
export interface DevIamBrokerSettings {
  /** Exact `iss`, trailing slash included. */
  issuer: string
  discovery_url: string
  /** The broker's client at the development IAM (token exchange + refresh). */
  client_id: string
  client_secret: string
  auth_method: 'client_secret_basic' | 'client_secret_post'
}

/**
 * The development IAM as the broker should see it: issuer, discovery URL, and the `broker` client's id
 * and secret (or another client with the token-exchange grant).
 */
export function devIamBrokerSettings(devIam: Pick<RunningDevIam, 'issuer' | 'discoveryUrl' | 'config'>, clientId = 'broker'): DevIamBrokerSettings {
  const client = devIam.config.clients.find((c) => c.client_id === clientId)
  if (!client) throw new TypeError(`the development IAM has no client ${clientId}`)
  if (!client.grant_types.includes(GRANT.tokenExchange)) throw new TypeError(`development IAM client ${clientId} lacks the token-exchange grant`)
  return {
    issuer: devIam.issuer,
    discovery_url: devIam.discoveryUrl,
    client_id: client.client_id,
    client_secret: client.client_secret,
    auth_method: client.token_endpoint_auth_method,
  }
}

/**
 * One entry of the broker's `iam.issuers` list (src/iam/iam_config.ts, TrustedIssuerSchema input) for the
 * development IAM. The broker reads client secrets from files only, so this writes the secret to
 * `secretFile` (mode 0600) and points `client_secret_file` at it. `development: true` is what allows the
 * http:// issuer; a production configuration must never carry it. `audience` is the `aud` the broker
 * expects (its own issuer, which serve has the development IAM put in tokens that request none).
 */
export function devIamTrustedIssuer(settings: DevIamBrokerSettings, secretFile: string, options: { audience?: string } = {}): {
  issuer: string
  discovery_url: string
  development: true
  profile: 'wlcg'
  audience?: string
  client: { client_id: string; auth_method: 'client_secret_basic'; client_secret_file: string }
} {
  if (settings.auth_method !== 'client_secret_basic') throw new TypeError('the broker authenticates to IAM with client_secret_basic or private_key_jwt only')
  writeSecretFileAtomic(secretFile, `${settings.client_secret}\n`)
  return {
    issuer: settings.issuer,
    discovery_url: settings.discovery_url,
    development: true,
    profile: 'wlcg',
    ...(options.audience ? { audience: options.audience } : {}),
    client: { client_id: settings.client_id, auth_method: 'client_secret_basic', client_secret_file: secretFile },
  }
}

/**
 * The development realm with the broker's client allowed to sign console users in: the authorization_code
 * grant and the console's redirect URI added to client `clientId`.
 */
export function withConsoleSignIn(input: DevIamConfigInput, redirectUri: string, clientId = 'broker'): DevIamConfigInput {
  return {
    ...input,
    clients: input.clients.map((c) => c.client_id !== clientId ? c : {
      ...c,
      grant_types: [...new Set([...c.grant_types, GRANT.authorizationCode])],
      scopes: [...new Set([...c.scopes, 'openid', 'profile', 'wlcg.groups'])],
      redirect_uris: [...new Set([...(c.redirect_uris ?? []), redirectUri])],
    }),
  }
}
