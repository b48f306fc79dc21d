import { loadConfig } from '../../config.ts'
import { createLogger } from '../../lib/logger.ts'
import { startBroker } from '../../server.ts'
import { parse, type CommandIo } from '../command.ts'

const HELP = `Usage: condor-token-broker serve [--config FILE]

Serves the broker. With no configuration it uses embedded defaults: keys and a development TLS
certificate under data/, HTTPS on 127.0.0.1:8443, issuer https://localhost:8443.
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
  await new Promise<void>((resolve) => {
    const stop = () => { void broker.close().then(resolve) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  return 0
}
