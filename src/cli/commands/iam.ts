import { loadConfig } from '../../config.ts'
import { IamDiscovery } from '../../iam/discovery.ts'
import { checkIamIssuer, formatIamCheckStep } from '../../iam/iam_check.ts'
import { createIamFetch } from '../../iam/iam_fetch.ts'
import { systemClock } from '../../lib/clock.ts'
import { silentLogger } from '../../lib/logger.ts'
import { servedIamConfig } from '../../services.ts'
import { CliError, parse, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker iam check [--config FILE]

iam check
    For every IAM issuer the broker trusts (iam.issuers; without any, outside production, the
    development IAM serve starts on dev_iam.port), check discovery, the JWKS and, when the broker has
    a client at that IAM, introspection authenticated with its credentials. One line per issuer and
    step: ok, or FAIL with the URL and the cause (dns, tls, refused, timeout, HTTP status, IAM error).
    Exit status: 0 all passed, 1 a check failed, 2 usage.

Common options: --config FILE (or CTB_CONFIG)`

export async function iamCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  if (sub !== 'check') throw new CliError(`unknown iam command "${sub}" (see iam --help)`, 2)
  const { values } = parse(rest, { config: { type: 'string' } })
  if (values.help) { io.out(HELP); return 0 }
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  const iam = servedIamConfig(config)
  if (!iam) throw new CliError('no IAM issuer configured (iam.issuers), and a production broker starts no development IAM')
  const timeoutSeconds = Math.max(iam.timeout_seconds, iam.jwks_timeout_seconds)
  const fetch = createIamFetch({ timeoutSeconds })
  // The failures are what this command prints; the log lines would only repeat them on stderr.
  const discovery = await IamDiscovery.create(iam, { fetch, clock: systemClock, log: silentLogger })
  let failed = 0
  for (const issuer of discovery.issuers) {
    const steps = await checkIamIssuer(issuer, { discovery, fetch, timeoutSeconds }, { introspection: issuer.config.client !== undefined })
    for (const s of steps) {
      io.out(formatIamCheckStep(s))
      if (!s.ok) failed++
    }
  }
  if (failed > 0) io.err(`${failed} IAM check${failed === 1 ? '' : 's'} failed`)
  return failed > 0 ? 1 : 0
}
