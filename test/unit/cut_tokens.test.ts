import { expect, it } from 'vitest'
import { cutTokens } from '../../src/lib/cut_tokens.ts'

/**
 * JWTs and IAM's opaque tokens are base64url (RFC 4648 §5): their alphabet has `-` and `_`. An ES256
 * signature is 64 bytes, 86 characters, so `_` turns up in most signed tokens. The signature below is a
 * hand-written base64url string with the underscores such signatures carry.
 */
const HEADER = 'eyJhbGciOiJFUzI1NiIsImtpZCI6InJzYTEifQ' // {"alg":"ES256","kid":"rsa1"}
const PAYLOAD = 'eyJzdWIiOiJpdm8iLCJleHAiOjE3NjQ1NDcyMDB9' // {"sub":"ivo","exp":1764547200}
const SIGNATURE = 'k3J8vQx2LmN0pRsT4uVwXyZa1B_c9Dq_Wm2xE7r_Tn5sKp0Lq8Hj3Fg6Yb1Vc4Nd7Ze0Ua2Sx5_Ri9Oe3Hw6Ty8Gl'

it('cuts a signed JWT whole when its signature holds underscores', () => {
  const jwt = `${HEADER}.${PAYLOAD}.${SIGNATURE}`
  expect(cutTokens(`Invalid token: ${jwt}`)).toBe('Invalid token: [token]')
})

it('cuts an opaque base64url refresh token whole when it holds underscores', () => {
  // 32 random bytes in base64url, as an opaque token: 43 characters, underscores between short runs.
  const opaque = 'Xq3_9vLm_T2pR8sw_K4nY7ub_Z1cE6hA_Wd5gJ0fM-o'
  expect(cutTokens(`Invalid refresh token: ${opaque}`)).toBe('Invalid refresh token: [token]')
})

it('leaves IAM error codes, snake_case words, host names and UUIDs as they are', () => {
  const text = 'invalid_grant: client 6f1c2b7e-0d4a-4f3e-9b8a-1c2d3e4f5a6b at iam-escape.cloud.cnaf.infn.it wants eduperson_entitlement'
  expect(cutTokens(text)).toBe(text)
})

it('leaves the path of a storage scope IAM names, mixed case and digits as CMS data paths are', () => {
  // WLCG storage scopes are `storage.<verb>:<path>`, SciTokens ones `read:` and `write:`; a dataset path
  // such as CMS's /store/data/<era>/<primary dataset>/<tier> is the part an operator needs to see.
  for (const scope of ['storage.read:/store/data/Run2022D/JetMET/MINIAOD', 'storage.modify:/store/user/JSmith2024/analysis', 'read:/store/mc/RunIISummer20UL18/QCD']) {
    const text = `Invalid scope: ${scope}`
    expect(cutTokens(text)).toBe(text)
  }
})

it('still cuts a token that follows a colon without a scope name before it', () => {
  expect(cutTokens('token:Kx9vQ2mZ7pL4tR8wN1bY6cH3')).toBe('token:[token]')
})
