import { generateKeyPairSync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { OperatorError } from '../../src/errors.ts'
import { loadIamClientCredentials } from '../../src/iam/client_auth.ts'

describe('loadIamClientCredentials', () => {
  it('without a client: no authentication (local verification needs none)', async () => {
    expect((await loadIamClientCredentials(undefined)).method).toBe('none')
  })
  it('reads and trims the client secret file', async () => {
    const seen: string[] = []
    const c = await loadIamClientCredentials({ client_id: 'b', auth_method: 'client_secret_basic', client_secret_file: '/s' }, (p) => { seen.push(p); return Buffer.from('s3cret\n') })
    expect(c).toMatchObject({ clientId: 'b', method: 'client_secret_basic' })
    expect(seen).toEqual(['/s'])
  })
  it('refuses an empty secret file', async () => {
    await expect(loadIamClientCredentials({ client_id: 'b', auth_method: 'client_secret_basic', client_secret_file: '/s' }, () => Buffer.from('\n'))).rejects.toThrow(OperatorError)
  })
  it.each([
    ['PKCS#1 RSA', () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs1' })],
    ['SEC1 P-256', () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'sec1' })],
  ])('loads a %s private key for private_key_jwt', async (_n, pem) => {
    const c = await loadIamClientCredentials({ client_id: 'b', auth_method: 'private_key_jwt', private_key_file: '/k' }, () => Buffer.from(pem()))
    expect(c.method).toBe('private_key_jwt')
  })
  it.each([
    ['a P-384 key', () => Buffer.from(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }))],
    ['garbage', () => Buffer.from('not a key')],
  ])('refuses %s with an operator error that names the file', async (_n, read) => {
    await expect(loadIamClientCredentials({ client_id: 'b', auth_method: 'private_key_jwt', private_key_file: '/etc/k.pem' }, read)).rejects.toThrow(/\/etc\/k\.pem/)
  })
})
