import { userInfo } from 'node:os'
import { loadConfig } from '../../config.ts'
import { parseProvider, parseUser } from '../../contract/job_credentials.ts'
import { revokeStored } from '../../credentials/sealed_refresh_tokens.ts'
import { systemClock } from '../../lib/clock.ts'
import { assertDataDirOwner } from '../data_dir_owner.ts'
import { cliStoreOptions, openBrokerStore, tryAuditMacKey } from '../../storage/open_store.ts'
import { CliError, parse, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker credential revoke USER PROVIDER [--reason TEXT]
       condor-token-broker credential list [--json]

  credential revoke   revoke a user's stored job credential: its refresh token is dropped, the token
                      endpoint answers 403 access_denied and the Vault-compatible path "permission denied"
                      (HTCondor's credmons then remove the user's .use). Audited as credential.revoked.
                      Takes effect in a running broker at its next request for that credential.
  credential list     registered credentials (no secrets)
Common options: --config FILE (or CTB_CONFIG)`

export async function credentialCommand(argv: string[], io: CommandIo): Promise<number> {
  const sub = argv[0]
  if (sub !== 'revoke' && sub !== 'list') { io.out(HELP); return sub === '--help' || sub === '-h' ? 0 : 2 }
  const { values, positionals } = parse(argv.slice(1), { config: { type: 'string' }, reason: { type: 'string' }, json: { type: 'boolean' } }, true)
  if (values.help) { io.out(HELP); return 0 }
  if (sub === 'revoke' && positionals.length !== 2) throw new CliError('credential revoke takes USER PROVIDER', 2)
  if (sub === 'list' && positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0]}"`, 2)
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  // list only reads: a host without the audit MAC key may run it; revoke writes a record.
  if (sub === 'revoke') assertDataDirOwner(config.data_dir, 'credential revoke')
  const mac = sub === 'list' ? tryAuditMacKey(config) : undefined
  const store = await openBrokerStore(config, cliStoreOptions(mac))
  try {
    if (sub === 'list') {
      const all = await store.listCredentials()
      if (all.length === 0 && !values.json) {
        io.out(`no stored job credentials${config.credentials.enabled ? '' : ' (credentials.enabled is false in this configuration)'}`)
        return 0
      }
      for (const c of all) {
        io.out(values.json
          ? JSON.stringify({ user: c.user, provider: c.provider, kind: c.kind, iss: c.iss, sub: c.sub, scopes: c.scopes, audience: c.audience, created_at: c.createdAt, rotated_at: c.rotatedAt, revoked: c.revoked, revoked_at: c.revokedAt, revoked_by: c.revokedBy })
          : `${c.user}  ${c.provider}  ${c.kind}  ${c.revoked ? `revoked ${iso(c.revokedAt!)}${c.revokedBy ? ` by ${c.revokedBy}` : ''}` : 'active'}  registered ${iso(c.createdAt)}${c.rotatedAt ? `  rotated ${iso(c.rotatedAt)}` : ''}  scopes "${c.scopes.join(' ')}"`)
      }
      return 0
    }
    const user = parseUser(positionals[0]!)
    const provider = parseProvider(positionals[1]!)
    if (!user || !provider) throw new CliError('USER must be an HTCondor user name and PROVIDER a provider name', 2)
    const done = await revokeStored(store, { user, provider }, { by: `cli:${userInfo().username}`, now: systemClock.now(), ...(values.reason ? { reason: values.reason } : {}) })
    if (!done) throw new CliError(`no unrevoked credential ${user}/${provider}`)
    io.out(`revoked credential ${user}/${provider}`)
    return 0
  } finally {
    await store.close()
  }
}

function iso(t: number): string {
  return new Date(t * 1000).toISOString().replace('.000Z', 'Z')
}
