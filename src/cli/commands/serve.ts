import { constants } from 'node:os'
import { loadConfig } from '../../config.ts'
import { createLogger, type Logger } from '../../lib/logger.ts'
import { startBroker, type RunningBroker } from '../../server.ts'
import { ConfigurationError } from '../../errors.ts'
import { CliError, parse, type CommandIo } from '../command.ts'
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
If the audit write path stops for good (the SQLite writer thread died: nothing could be issued until a
restart), serve logs one error line saying why, stops as on SIGTERM and exits with status 70 (EX_SOFTWARE)
for its supervisor (systemd Restart=on-failure, a container restart policy) to start it again; also
when that happens during a SIGTERM's drain.
A configuration it cannot start with (invalid, or refused by the start-up checks) exits with status 78
(EX_CONFIG), which the systemd unit does not restart; a usage error exits 2, other start-up failures 1.
Every config field can be overridden with CTB_<FIELD> (e.g. CTB_LISTEN_PORT); see config/broker.example.yaml.`

/**
 * serve's exit status once its audit write path has stopped for good: EX_SOFTWARE from sysexits.h, "an
 * internal software error", which the death of the broker's own writer thread is (an exception nothing
 * caught, a native crash). Not EX_TEMPFAIL (75): that says the environment failed for now, and the broker
 * keeps serving through such outages (503). Distinct from 1 (start-up and CLI failures) and 128 + n (a
 * second signal), so that an operator, or systemd's RestartPreventExitStatus=, can tell it apart; any
 * non-zero status is a failure to Restart=on-failure, so the unit restarts it as it is.
 */
export const WRITE_PATH_LOST_STATUS = 70

/**
 * serve's exit status when its configuration cannot start (loadConfig, the start-up checks of
 * src/preflight.ts): EX_CONFIG from sysexits.h, as many daemons use it. Restarting cannot help until someone
 * edits the configuration, so the systemd unit names it in RestartPreventExitStatus= and shows the unit
 * failed instead of restarting it every RestartSec for ever. Usage errors stay 2, as in every command;
 * other start-up failures (a port in use, an audit log that fails its checks) stay 1.
 */
export const CONFIG_ERROR_STATUS = 78

type StopCause = { signal: NodeJS.Signals } | { writePathLost: string }

export async function serveCommand(argv: string[], io: CommandIo): Promise<number> {
  // Usually already holding: the CLI entry point starts before this module and all it imports load.
  const startup = holdStartupSignals(io.out)
  let broker: RunningBroker | undefined
  let log: Logger | undefined
  try {
    const { values } = parse(argv, { config: { type: 'string' } })
    if (values.help) { io.out(HELP); return 0 }
    try {
      const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
      log = createLogger(undefined, { level: config.log.level })
      broker = await startBroker(config, { log })
    } catch (err) {
      // Not 1, which a supervisor restarts as a transient failure: this configuration never starts as it is.
      if (err instanceof ConfigurationError) throw new CliError(err.message, CONFIG_ERROR_STATUS)
      throw err
    }
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
  let resolveStop!: (cause: StopCause) => void
  const stopped = new Promise<StopCause>((resolve) => { resolveStop = resolve })
  let stopping = false
  // A second one while stopping ends the process at once, as during start-up: the grace bounds the
  // requests in flight, and STORE_STOP_MS the services' close on PostgreSQL, but nothing bounds SQLite's
  // close on a hung disk, nor need an operator wait; nothing the broker has not committed has left it. The same one
  // delivered twice (a Ctrl-C under npm start) is not a second (SAME_STOP_WITHIN_MS).
  let firstAt: number | undefined
  let firstAtSignal: NodeJS.Signals | undefined
  const stop = (s: NodeJS.Signals) => {
    if (firstAt === undefined) {
      firstAt = performance.now()
      firstAtSignal = s
      // Already stopping because the write path was lost: the signal asks for the stop under way.
      if (!stopping) { stopping = true; resolveStop({ signal: s }) }
      return
    }
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
  // Crash-only: a write path stopped for good (the SQLite writer thread died) comes back only with a new
  // process, and until then every issuance is refused. Answering 503 for ever would have every pilot,
  // credmon and provisioning run retry a broker that cannot heal, so stop as SIGTERM does and exit non-zero
  // for the supervisor (systemd Restart=on-failure, a container restart policy) to start it again.
  // Heard during a signal's drain too (until the store closes): the loss is then said and ends the process
  // with 70 all the same, so that the journal and the status tell of a writer thread that died whichever
  // came first, and the last line does not claim an audit flushed that was not.
  const brokerLog = log!
  let lost: string | undefined
  broker.services.store.onWritePathStopped((reason) => {
    lost = reason
    const next = stopping ? `already stopping for ${firstAtSignal ?? 'a signal'}; exiting with status ${WRITE_PATH_LOST_STATUS} once stopped` : `stopping, then exiting with status ${WRITE_PATH_LOST_STATUS} for its supervisor to restart it`
    brokerLog.error(`the audit write path has stopped for good (${reason}); nothing can be issued until the broker restarts: ${next}`)
    if (stopping) return
    stopping = true
    resolveStop({ writePathLost: reason })
  })
  const cause = await stopped
  // Stopping: nothing is reloaded any more, but a SIGHUP must still find a handler. Once the policy holder
  // has closed (services.close) serve's would be the last, and Node's default for SIGHUP ends the process:
  // a reload racing the stop would cut the rest of the close (on PostgreSQL, the wait for the audit's
  // writes) and end with a signal instead of status 0. It stays in place until the process exits.
  process.off('SIGHUP', onHup)
  process.on('SIGHUP', () => io.out('SIGHUP while stopping: ignored'))
  const graceSeconds = inForce.shutdown_grace_seconds
  io.out(`${'signal' in cause ? cause.signal : 'audit write path lost'}: draining (up to ${graceSeconds} s for requests in flight)`)
  const { forced, abandoned } = await broker.close({ graceMs: graceSeconds * 1000 })
  // Not "audit flushed" when the database held the close past its bound: the warn line says what was cut.
  const audit = abandoned ? `the audit database did not answer: ${abandoned.unwritten} write(s) abandoned, none answered with a token` : 'audit flushed'
  if (lost !== undefined) {
    const requests = forced === 0 ? 'every request in flight finished' : `the grace of ${graceSeconds} s ran out and ${forced} connection(s) were closed`
    io.out(`stopped: ${requests}; the audit write path was lost (${lost}): exiting with status ${WRITE_PATH_LOST_STATUS}`)
    return WRITE_PATH_LOST_STATUS
  }
  io.out(forced === 0 && !abandoned
    ? 'stopped cleanly: every request in flight finished, audit flushed'
    : forced === 0 ? `stopped: every request in flight finished; ${audit}`
      : `stopped: the grace of ${graceSeconds} s ran out and ${forced} connection(s) were closed; ${audit}`)
  return 0
}
