// The bench's reference: oidc-provider issuing ES256 JWT access tokens by client_credentials, in a process
// of its own on loopback, plain HTTP (as the broker is driven in the comparison). Production-ish settings:
// no development interactions, no request logging, its own signing key, an adapter that stores nothing
// (JWT access tokens are never saved). Prints "reference listening on <port>" once it accepts connections.
//
//   node bench/reference_provider.ts <port>
import { generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:http'
import Provider, { type Adapter } from 'oidc-provider'

export const REFERENCE_CLIENT = { id: 'bench-reference', secret: 'bench-reference-secret' }
export const REFERENCE_RESOURCE = 'https://rs.example.org/'

/** JWT access tokens are self-contained: nothing is ever upserted, so an attempt is a bench bug. */
class NothingStored implements Adapter {
  async upsert(): Promise<void> { throw new Error('the reference stores nothing') }
  async find(): Promise<undefined> { return undefined }
  async findByUserCode(): Promise<undefined> { return undefined }
  async findByUid(): Promise<undefined> { return undefined }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
}

async function main(port: number): Promise<void> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    adapter: NothingStored,
    clients: [{
      client_id: REFERENCE_CLIENT.id, client_secret: REFERENCE_CLIENT.secret,
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', id_token_signed_response_alg: 'ES256',
    }],
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' }] },
    scopes: ['compute.read'],
    ttl: { ClientCredentials: 1200 },
    responseTypes: ['none'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => REFERENCE_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'compute.read', audience: REFERENCE_RESOURCE, accessTokenTTL: 1200,
          accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  })
  const server = createServer(provider.callback())
  server.keepAliveTimeout = 65_000
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  process.stdout.write(`reference listening on ${port}\n`)
  const stop = () => server.close(() => process.exit(0))
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

if (import.meta.main) await main(Number(process.argv[2]))
