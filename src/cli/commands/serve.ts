import { constants } from 'node:os'
import { loadConfig } from '../../config.ts'
import { createLogger, type Logger } from '../../lib/logger.ts'
import { startBroker, type RunningBroker } from '../../server.ts'
import { parse, type CommandIo } from '../command.ts'
import { asksAgain, holdStartupSignals } from '../startup_signals.ts'

const HELP = `Usage: condor-token-broker serve [--config FILE]

Serves the broker. With no configuration it uses embedded defaults: keys and a development TLS
certificate under data/, HTTPS on 127.0.0.1:8443, issuer https://localhost:8443.
On SIGTERM or SIGINT, requests in flight get shutdown_grace_seconds to finish, then the services close (with
PostgreSQL at most 10 s more: connections the database leaves waiting are cut); SIGHUP reloads policies,
signing keys and the TLS certificate; a changed policy file or SciToken keyring ("keys rotate") is also
taken up by itself (policy.watch, scitoken.watch_keys). A SIGHUP while serve starts is held and reloads
once it serves; a SIGTERM or SIGINT while it starts stops it cleanly (status 0) once start-up is done. A
SIGHUP while it stops is ignored. A second SIGTERM or SIGINT, while it starts or while it stops, ends it at once (status 128 + the signal's number);
one within 250 ms of the first (a Ctrl-C that npm start passes on too) is the same one, not a second.
Every config field can be overridden with CTB_<FIELD> (e.g. CTB_LISTEN_PORT); see config/broker.example.yaml.`

export async function serveCommand(argv: string[], io: CommandIo): Promise<number> {
  // Usually already holding: the CLI entry point starts before this module and all it imports load.
  const startup = holdStartupSignals(io.out)
  let broker: RunningBroker | undefined
  let log: Logger | undefined
  try {
    const { values } = parse(argv, { config: { type: 'string' } })
    if (values.help) { io.out(HELP); return 0 }
    const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
    log = createLogger(undefined, { level: config.log.level })
    broker = await startBroker(config, { log })
  } finally {
    // --help, or start-up failed: nothing to hand the signals to (a held TERM changes nothing: serve exits).
    if (!broker) startup.release()
  }
  const running = broker
  const inForce = broker.services.config
  io.out(`condor-token-broker serving at ${broker.url} (issuer ${inForce.issuer}, trust domain ${inForce.trust_domain})`)
  if (broker.devCaFile) io.out(`development CA: ${broker.devCaFile} (e.g. curl --cacert ${broker.devCaFile} ${broker.url}/healthz)`)
  const devIam = broker.services.devIam
  if (devIam) io.out(`DEVELOPMENT IAM (not for production): ${devIam.issuer} (clients and users: docs/dev-iam.md)`)
  // SIGHUP: keys and TLS certificate (the policy holder answers SIGHUP for the policies itself).
  const onHup = () => { void running.reload('sighup') }
  let resolveStop!: (s: NodeJS.Signals) => void
  const stopped = new Promise<NodeJS.Signals>((resolve) => { resolveStop = resolve })
  // A second one while stopping ends the process at once, as during start-up: the grace bounds the
  // requests in flight, and STORE_STOP_MS the services' close on PostgreSQL, but nothing bounds SQLite's
  // close on a hung disk, nor need an operator wait; nothing the broker has not committed has left it. The same one
  // delivered twice (a Ctrl-C under npm start) is not a second (SAME_STOP_WITHIN_MS).
  let firstAt: number | undefined
  const stop = (s: NodeJS.Signals) => {
    if (firstAt === undefined) { firstAt = performance.now(); resolveStop(s); return }
    if (!asksAgain(firstAt)) return
    io.out(`${s} again while stopping: exiting now`)
    process.exit(128 + (constants.signals[s] ?? 0))
  }
  // The running handlers go in in the same tick the start-up ones come out: no signal falls between them.
  process.on('SIGHUP', onHup)
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  const held = startup.release()
  if (held.stop) {
    stop(held.stop)
    firstAt = held.stopAt
  } else if (held.reloads > 0) {
    // The policies, keys and certificate were read during start-up, perhaps before the change the HUP announces.
    log?.info('SIGHUP arrived during start-up; reloading now', { count: held.reloads })
    broker.services.policy.reload('sighup')
    void broker.reload('sighup')
  }
  const signal = await stopped
  // Stopping: nothing is reloaded any more, but a SIGHUP must still find a handler. Once the policy holder
  // has closed (services.close) serve's would be the last, and Node's default for SIGHUP ends the process:
  // a reload racing the stop would cut the rest of the close (on PostgreSQL, the wait for the audit's
  // writes) and end with a signal instead of status 0. It stays in place until the process exits.
  process.off('SIGHUP', onHup)
  process.on('SIGHUP', () => io.out('SIGHUP while stopping: ignored'))
  const graceSeconds = inForce.shutdown_grace_seconds
  io.out(`${signal}: draining (up to ${graceSeconds} s for requests in flight)`)
  const { forced, abandoned } = await broker.close({ graceMs: graceSeconds * 1000 })
  // Not "audit flushed" when the database held the close past its bound: the warn line says what was cut.
  const audit = abandoned ? `the audit database did not answer: ${abandoned.unwritten} write(s) abandoned, none answered with a token` : 'audit flushed'
  io.out(forced === 0 && !abandoned
    ? 'stopped cleanly: every request in flight finished, audit flushed'
    : forced === 0 ? `stopped: every request in flight finished; ${audit}`
      : `stopped: the grace of ${graceSeconds} s ran out and ${forced} connection(s) were closed; ${audit}`)
  return 0
}
