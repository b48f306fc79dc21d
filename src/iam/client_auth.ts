import { createPrivateKey } from 'node:crypto'
import { importPKCS8 } from 'jose'
import { ClientSecretBasic, None, PrivateKeyJwt, type ClientAuth } from 'openid-client'
import { OperatorError } from '../errors.ts'
import { readSecretFile } from '../lib/secure_file.ts'
import type { IamClientConfig } from './iam_config.ts'

/** The broker's identity at one IAM: its client_id and how it proves it (docs/iam-and-wlcg.md §1.3). */
export interface IamClientCredentials {
  clientId: string
  auth: ClientAuth
  method: 'client_secret_basic' | 'private_key_jwt' | 'none'
}

/**
 * Loads the broker's client credentials for one IAM from files, once at start-up, so a missing or
 * world-readable secret stops the server with an operator message instead of failing per request.
 * Without a configured client the broker can still verify tokens locally (discovery + JWKS need none).
 */
export async function loadIamClientCredentials(client: IamClientConfig | undefined, readFile: (path: string) => Buffer = readSecretFile): Promise<IamClientCredentials> {
  if (!client) return { clientId: 'condor-token-broker', auth: None(), method: 'none' }
  if (client.auth_method === 'client_secret_basic') {
    const secret = readFile(client.client_secret_file!).toString('utf8').trim()
    if (!secret) throw new OperatorError('ECONFIG', `${client.client_secret_file} is empty`)
    return { clientId: client.client_id, auth: ClientSecretBasic(secret), method: 'client_secret_basic' }
  }
  const file = client.private_key_file!
  let pkcs8: string
  let alg: 'RS256' | 'ES256'
  try {
    const key = createPrivateKey(readFile(file))
    if (key.asymmetricKeyType === 'rsa') alg = 'RS256'
    else if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') alg = 'ES256'
    else throw new OperatorError('ECONFIG', `${file}: private_key_jwt needs an RSA or P-256 key`)
    // Accepts PKCS#1/SEC1 PEM too: re-export as PKCS#8 for WebCrypto.
    pkcs8 = key.export({ format: 'pem', type: 'pkcs8' }).toString()
  } catch (err) {
    if (err instanceof OperatorError) throw err
    throw new OperatorError('ECONFIG', `${file} is not a readable private key`)
  }
  const key = await importPKCS8(pkcs8, alg)
  return {
    clientId: client.client_id,
    auth: PrivateKeyJwt(client.private_key_kid ? { key, kid: client.private_key_kid } : key),
    method: 'private_key_jwt',
  }
}
