import { caDir, loadConfig } from '../../config.ts'
import { initPoolCa } from '../../ca/pool_ca.ts'
import { assertDataDirOwner } from '../data_dir_owner.ts'
import { systemClock } from '../../lib/clock.ts'
import { parse, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker ca init [--name NAME] [--config FILE]

  ca init    create the pool CA (ca.key, mode 0600, and ca.crt) under ca.dir (default <data_dir>/ca);
             refuses when either file exists. The key never leaves the broker: provisioning asks for
             host certificates at POST /v1/certificates, and verifiers fetch /v1/ca/certificate and
             /v1/ca/crl. A running broker takes up a new CA at its next start.

Common options: --config FILE (or CTB_CONFIG)`

/** `ca`: the pool CA (docs/pool-ca.md). */
export async function caCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  const { values } = parse(rest, { config: { type: 'string' }, name: { type: 'string' } })
  if (values.help) { io.out(HELP); return 0 }
  if (sub !== 'init') { io.err(`condor-token-broker: unknown ca command "${sub}" (see ca --help)`); return 2 }
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  assertDataDirOwner(config.data_dir, 'ca init')
  const created = await initPoolCa(caDir(config), { name: values.name ?? `${config.trust_domain} pool CA`, now: systemClock.now() })
  io.out(`pool CA created: key ${created.keyFile} (0600, never copy it), certificate ${created.certFile} (serial ${created.serial})`)
  return 0
}
