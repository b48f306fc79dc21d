import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

// HTCondor authenticates a SciToken as "<iss>,<sub>" and maps it through the CERTIFICATE_MAPFILE line's regex
// and substitution. The shipped policies mint users' SciTokens with sub "{preferred_username}@{uid_domain}"
// (policies/30-users.yaml), so with uid_domain users.example.org alice's token says
// sub "alice@users.example.org", and the mapped HTCondor user must be exactly that.
const ROOT = join(import.meta.dirname, '../..')
const LINE = /SCITOKENS (\/\^https:\\\/\\\/broker\\\.example\\\.org,[^ ]*\/) +([^\s`]+)/

function mapWith(doc: string, authenticated: string): string {
  const m = LINE.exec(readFileSync(join(ROOT, doc), 'utf8'))
  expect(m, `${doc} has a SCITOKENS line for https://broker.example.org`).not.toBeNull()
  const regex = new RegExp(m![1]!.slice(1, -1).replace(/\\\//g, '/'))
  const found = regex.exec(authenticated)
  expect(found, `${m![1]} matches ${authenticated}`).not.toBeNull()
  return m![2]!.replace(/\\(\d)/g, (_, n: string) => found![Number(n)] ?? '')
}

describe('the documented mapfile line for the broker\'s SciTokens', () => {
  for (const doc of ['README.md', 'docs/htcondor-tokens.md']) {
    it(`${doc}: maps alice's broker SciToken to alice@users.example.org`, () => {
      expect(mapWith(doc, 'https://broker.example.org,alice@users.example.org')).toBe('alice@users.example.org')
    })
  }
})
