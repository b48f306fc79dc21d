import { loadConfig } from '../../config.ts'
import { createLogger } from '../../lib/logger.ts'
import { startBroker } from '../../server.ts'
import { parse, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker serve [--config FILE]

Serves the broker. With no configuration it uses embedded defaults: keys and a development TLS
certificate under data/, HTTPS on 127.0.0.1:8443, issuer https://localhost:8443.
On SIGTERM or SIGINT, requests in flight get shutdown_grace_seconds to finish; SIGHUP reloads policies,
signing keys and the TLS certificate; a changed policy file or SciToken keyring ("keys rotate") is also
taken up by itself (policy.watch, scitoken.watch_keys).
Every config field can be overridden with CTB_<FIELD> (e.g. CTB_LISTEN_PORT); see config/broker.example.yaml.`

export async function serveCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } })
  if (values.help) { io.out(HELP); return 0 }
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  const broker = await startBroker(config, { log: createLogger(undefined, { level: config.log.level }) })
  const inForce = broker.services.config
  io.out(`condor-token-broker serving at ${broker.url} (issuer ${inForce.issuer}, trust domain ${inForce.trust_domain})`)
  if (broker.devCaFile) io.out(`development CA: ${broker.devCaFile} (e.g. curl --cacert ${broker.devCaFile} ${broker.url}/healthz)`)
  const devIam = broker.services.devIam
  if (devIam) io.out(`DEVELOPMENT IAM (not for production): ${devIam.issuer} (clients and users: docs/dev-iam.md)`)
  // SIGHUP: keys and TLS certificate (the policy holder answers SIGHUP for the policies itself).
  const onHup = () => { void broker.reload('sighup') }
  process.on('SIGHUP', onHup)
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    // A second signal during the drain changes nothing: the grace already bounds the wait.
    let seen = false
    const stop = (s: NodeJS.Signals) => { if (!seen) { seen = true; resolve(s) } }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  process.off('SIGHUP', onHup)
  const graceSeconds = inForce.shutdown_grace_seconds
  io.out(`${signal}: draining (up to ${graceSeconds} s for requests in flight)`)
  const { forced } = await broker.close({ graceMs: graceSeconds * 1000 })
  io.out(forced === 0
    ? 'stopped cleanly: every request in flight finished, audit flushed'
    : `stopped: the grace of ${graceSeconds} s ran out and ${forced} connection(s) were closed; audit flushed`)
  return 0
}
