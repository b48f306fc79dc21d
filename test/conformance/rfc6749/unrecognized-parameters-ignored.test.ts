// RFC 6749 §3.2: "The authorization server MUST ignore unrecognized request parameters."
import { describe, expect, it } from 'vitest'
import { useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §3.2 unrecognized parameters are ignored', () => {
  it('issues normally when unknown parameters are present, even repeated ones', async () => {
    const res = await t.post(t.form(await t.userToken(), { foo: 'bar', x_trace: ['1', '2'], claims: '{"a":1}', nonce: '' }))
    expect(res.status).toBe(200)
    expect(await res.json()).toHaveProperty('access_token')
  })
})
