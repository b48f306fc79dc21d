import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { parsePilotCount, parsePilotRedemption } from '../../src/contract/pilot.ts'
import { parseTokenExchangeRequest } from '../../src/contract/token_request.ts'
import { ExchangeForm, PilotEnrolmentForm, PilotRedemptionForm } from '../../src/http/openapi/token_form.ts'

const base = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'eyJ.a.b', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', role: 'startd' }

const accepts = (f: () => unknown): boolean => { try { f(); return true } catch { return false } }

/** The `pattern` the OpenAPI document shows for one field of a form, as a client would apply it (ECMA-262). */
function documentedPattern(form: z.ZodObject, field: string): RegExp {
  const js = z.toJSONSchema(form, { io: 'input' }) as { properties: Record<string, { pattern?: string; items?: { pattern?: string } }> }
  const p = js.properties[field]!
  return new RegExp((p.pattern ?? p.items!.pattern)!, 'u')
}

/**
 * The token endpoint's parsers check each value with the field schemas the document is built from. At the
 * edges (written from the parameter descriptions: whole seconds from 1, 1 to 100000 pilots, an absolute
 * URI without a fragment) the parser, and the document's pattern as a client reads it, agree.
 */
describe('token endpoint fields: parser and document agree', () => {
  it.each([
    ['1', true], ['0010', true], ['999999999', true], ['0', false], ['000', false], ['1000000000', false], ['-1', false], ['1.5', false],
  ])('lifetime %s → %s', (value, ok) => {
    expect(accepts(() => parseTokenExchangeRequest({ ...base, lifetime: value }))).toBe(ok)
    expect(documentedPattern(ExchangeForm, 'lifetime').test(value)).toBe(ok)
  })

  it.each([
    ['1', true], ['100000', true], ['000001', true], ['99999', true], ['0', false], ['100001', false], ['1000000', false], ['', false],
  ])('pilot_count %s → %s', (value, ok) => {
    expect(accepts(() => parsePilotCount(value))).toBe(ok)
    expect(documentedPattern(PilotEnrolmentForm, 'pilot_count').test(value)).toBe(ok)
  })

  it.each([
    ['https://xrootd.example.org:1094', true], ['urn:x', true], ['https://x#frag', false], ['relative/path', false], ['https://a b', false],
  ])('resource %s → %s', (value, ok) => {
    expect(accepts(() => parseTokenExchangeRequest({ ...base, resource: value }))).toBe(ok)
    expect(documentedPattern(ExchangeForm, 'resource').test(value)).toBe(ok)
  })

  it.each([
    ['slurm_job_id', '4242', true], ['slurm_job_id', '4242_7', true], ['slurm_job_id', 'job-1', false],
    ['node', 'wn01.hpc-b.example.org', true], ['node', '-wn', false], // 254 characters, each label within 63:
    ['node', `${'a'.repeat(62)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`, false],
    ['job_end', '1800000000', true], ['job_end', '18e8', false],
  ])('pilot redemption %s %s → %s', (field, value, ok) => {
    const fields: Record<string, string> = { slurm_job_id: '4242', node: 'wn01', job_end: '1800000000', [field]: value }
    expect(accepts(() => parsePilotRedemption((n) => fields[n]))).toBe(ok)
    const pattern = documentedPattern(PilotRedemptionForm, field)
    const maxLength = (z.toJSONSchema(PilotRedemptionForm, { io: 'input' }) as { properties: Record<string, { maxLength?: number }> }).properties[field]!.maxLength
    expect(pattern.test(value) && value.length <= (maxLength ?? Infinity)).toBe(ok)
  })
})
