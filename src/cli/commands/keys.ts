import { existsSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { loadConfig } from '../../config.ts'
import { auditLogMacsBeganAt, lostAuditMacKey, openBrokerStore } from '../../storage/open_store.ts'
import { auditMacKeyFile, ensureAuditMacKeyFile, readAuditMacKey } from '../../keys/audit_mac_key.ts'
import { isPreparedEntry, JWKS_MAX_AGE_SECONDS, JWKS_REFRESH_SECONDS, KeyStore, NEW_KID_VISIBLE_SECONDS } from '../../keys/key_store.ts'
import { systemClock } from '../../lib/clock.ts'
import { CliError, parse, type CommandIo } from '../command.ts'
import { assertDataDirOwner } from '../data_dir_owner.ts'
import { OperatorError } from '../../errors.ts'
import type { AuditEvent } from '../../audit/audit_log.ts'

const HELP = `Usage: condor-token-broker keys <init|list|rotate|import> [options]

  keys init [--condor-key NAME]    create the HTCondor signing key (default: idtoken.key from the config),
                                   the SciToken signing key and the next one (published in /jwks, not yet
                                   signing), and the audit MAC key (audit.mac_key_file), if missing; never
                                   overwrites
  keys list                        show HTCondor keys, SciToken keys (kid, status, publish window) and the
                                   audit MAC key's id (the same on every replica and CLI host)
  keys rotate [--alg ES256|RS256] [--force] [--compromised]
                                   sign SciTokens with the next key, which verifiers already know from /jwks,
                                   and publish a new next key; the old public key stays in /jwks until every
                                   token it signed has expired (and at least scitoken.retired_key_min_publish);
                                   a running serve takes it up by itself (scitoken.watch_keys) or on SIGHUP.
                                   Without a published key of the algorithm, it publishes one and keeps the
                                   signing key; a key published less than 11 minutes after the others is
                                   refused (verifiers and HTTP caches still hold key sets without it). --force signs with it
                                   anyway. --compromised (a stolen key; implies --force) signs with a
                                   fresh key and takes every key now in /jwks out of it at once, for good:
                                   tokens they signed are refused once verifiers refetch /jwks
  keys import FILE [--name NAME]   import an existing pool key file (e.g. /etc/condor/passwords.d/POOL) as is

Common options: --config FILE (or CTB_CONFIG)`

export async function keysCommand(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv
  if (!sub || sub === '--help' || sub === '-h') { io.out(HELP); return sub ? 0 : 2 }
  const { values, positionals } = parse(rest, {
    config: { type: 'string' },
    'condor-key': { type: 'string' },
    alg: { type: 'string' },
    name: { type: 'string' },
    force: { type: 'boolean' },
    compromised: { type: 'boolean' },
  }, sub === 'import')
  if (values.help) { io.out(HELP); return 0 }
  const config = loadConfig({ ...(values.config ? { file: values.config } : {}), env: io.env })
  if (sub === 'init' || sub === 'rotate' || sub === 'import') assertDataDirOwner(config.data_dir, `keys ${sub}`)
  const store = new KeyStore(`${config.data_dir}/keys`)
  const now = systemClock.now()
  switch (sub) {
    case 'init': {
      const macFile = auditMacKeyFile(config)
      // Asked first, so a refusal leaves nothing half made: a lost key over a log that carries MACs must come
      // back from a backup, and a new one would leave every MAC'd record failing its check for good.
      if (!existsSync(macFile)) {
        const began = await auditLogMacsBeganAt(config)
        if (began !== undefined) throw new OperatorError('EAUDITMACKEY', `${lostAuditMacKey(macFile, began)}; keys init created nothing`)
      }
      const name = values['condor-key'] ?? config.idtoken.key
      if (store.hasCondorKey(name)) io.out(`HTCondor key ${name}: exists at ${store.condorKeyPath(name)}`)
      else io.out(`HTCondor key ${name}: created ${store.createCondorKey(name)} (copy it, mode 0600, into SEC_PASSWORD_DIRECTORY of every daemon that verifies tokens)`)
      const jwt = store.ensureJwtKey(config.scitoken.alg, now)
      io.out(`SciToken key: ${jwt.created ? 'created' : 'exists'} kid=${jwt.entry.kid} alg=${jwt.entry.alg}`)
      const next = store.prepareNextJwtKey(config.scitoken.alg, now)
      io.out(`  next kid=${next.kid} alg=${next.alg}: published in /jwks, signs from the next "keys rotate"`)
      const created = ensureAuditMacKeyFile(macFile)
      io.out(`audit MAC key: ${created ? 'created' : 'exists at'} ${macFile} key id ${readAuditMacKey(macFile).kid}${created ? ' (copy it, mode 0600, to every replica and every host that runs the CLI)' : ''}`)
      return 0
    }
    case 'list': {
      const condor = store.listCondorKeys()
      io.out('HTCondor keys (IDTOKEN kid = name):')
      if (condor.length === 0) io.out('  (none; run "keys init")')
      for (const k of condor) io.out(`  ${k.name}  ${k.bytes} bytes  mode ${k.mode}  sha256:${k.fingerprint}${k.name === config.idtoken.key ? '  (signing)' : ''}`)
      io.out('SciToken keys:')
      const ring = store.readKeyring()
      if (ring.length === 0) io.out('  (none; run "keys init")')
      for (const k of ring) {
        // A compromise rotation that could not remove a key's file (or a file restored since) leaves the
        // stolen private key on disk: this is where an operator looks afterwards.
        const status = k.compromised !== undefined ? `compromised, unpublished since ${iso(k.compromised)}${store.hasJwtKeyFile(k.kid) ? `; its private key jwt/${k.kid}.pem still on disk: remove it` : ''}` : isPreparedEntry(k) ? 'next, published, signs from the next rotation' : k.retired === undefined ? 'active' : (k.publish_until ?? 0) > now ? `retired, published until ${new Date(k.publish_until! * 1000).toISOString()}` : 'expired (pruned at next rotation)'
        io.out(`  ${k.kid}  ${k.alg}  created ${new Date(k.created * 1000).toISOString()}  ${status}`)
      }
      // Shown so that each replica and CLI host can be checked for the same key (by id) after copying it.
      const macFile = auditMacKeyFile(config)
      if (!existsSync(macFile)) {
        io.out(`audit MAC key: none at ${macFile} (run "condor-token-broker keys init" on the first broker and copy the file, mode 0600, to every replica and every host that runs the CLI)`)
      } else {
        try {
          const mode = (statSync(macFile).mode & 0o777).toString(8).padStart(4, '0')
          io.out(`audit MAC key: ${macFile}  mode ${mode}  key id ${readAuditMacKey(macFile).kid}`)
        } catch (err) {
          io.out(`audit MAC key: unusable: ${(err as Error).message}`)
        }
      }
      return 0
    }
    case 'rotate': {
      const alg = values.alg ?? config.scitoken.alg
      if (alg !== 'ES256' && alg !== 'RS256') throw new CliError(`--alg must be ES256 or RS256, got "${alg}"`, 2)
      // Every token the old key signed expires within scitoken.max_lifetime; add the scitokens-cpp cache floor.
      const retain = Math.max(config.scitoken.max_lifetime + 60, config.scitoken.retired_key_min_publish)
      // Open the audit store first: a broker whose audit log is unreachable must not change keys unrecorded.
      const audit = await openBrokerStore(config, { sqliteWriter: 'inline' })
      try {
        if (values.compromised === true) {
          await rotateCompromised(store, alg, now, audit, io, config.scitoken.watch_keys)
          return 0
        }
        if (values.force !== true) {
          const refusal = unpublishedRotation(store, alg, now)
          if (refusal === 'none prepared') {
            await publishFirst(store, alg, now, audit, io, config.scitoken.watch_keys, values.alg ? `keys rotate --alg ${alg}` : 'keys rotate')
            return 0
          }
          if (refusal) throw new CliError(refusal, 1)
        }
        // Read before rotating: afterwards the prepared key is the active one.
        const joinedLater = preparedJoinedLater(store, alg, now)
        const r = store.rotateJwtKey(alg, now, retain)
        io.out(`SciToken key: new active kid=${r.active.kid} alg=${r.active.alg}`)
        if (r.retired) io.out(`  retired kid=${r.retired.kid}, kept in /jwks until ${new Date(r.retired.publish_until! * 1000).toISOString()}`)
        io.out(`  next kid=${r.next.kid}: published in /jwks now, signs from the next rotation`)
        // Verifiers holding a key set fetched before the new kid was published refuse its tokens until they refetch.
        if (r.publishedSince === undefined) {
          io.err(`warning: kid ${r.active.kid} was not in /jwks before: verifiers that fetched /jwks in the last ${NEW_KID_VISIBLE_SECONDS / 60} minutes refuse its tokens until they refetch (${REFETCH})`)
        } else if (joinedLater && now - r.publishedSince < NEW_KID_VISIBLE_SECONDS) {
          io.err(`warning: kid ${r.active.kid} was in /jwks only since ${new Date(r.publishedSince * 1000).toISOString()}: verifiers that fetched /jwks before then refuse its tokens until they refetch (${REFETCH})`)
        }
        try {
          await audit.record({
            type: 'key.rotated', time: now, caller: { sub: `cli:${userInfo().username}` }, decision: 'allow',
            reason: 'keys rotate',
            detail: { alg: r.active.alg, kid: r.active.kid, next_kid: r.next.kid, ...(r.publishedSince !== undefined ? { published_since: r.publishedSince } : {}), ...(r.retired ? { retired_kid: r.retired.kid, publish_until: r.retired.publish_until } : {}) },
          })
        } catch (err) {
          throw new CliError(`the key was rotated but the rotation could not be audited: ${(err as Error).message}`)
        }
        // A running serve on this data directory watches the keyring (scitoken.watch_keys) and reloads on its own.
        io.out(config.scitoken.watch_keys
          ? '  recorded in the audit log; a running serve on this data directory signs with it within a second (SIGHUP forces it)'
          : '  recorded in the audit log; send SIGHUP to a running serve (scitoken.watch_keys is off) to start signing with it')
      } finally {
        await audit.close()
      }
      return 0
    }
    case 'import': {
      const file = positionals[0]
      if (!file || positionals.length > 1) throw new CliError('keys import takes exactly one key file', 2)
      const path = store.importCondorKey(file, values.name)
      io.out(`imported ${file} as ${path}`)
      return 0
    }
    default:
      throw new CliError(`unknown keys command "${sub}" (see keys --help)`, 2)
  }
}

const iso = (t: number): string => new Date(t * 1000).toISOString()

/** Why a new kid takes NEW_KID_VISIBLE_SECONDS to reach verifiers, for the messages below. */
const REFETCH = `scitokens-cpp refetches every ${JWKS_REFRESH_SECONDS} s, possibly from an HTTP cache's copy up to ${JWKS_MAX_AGE_SECONDS} s old`

/**
 * Why `keys rotate` must not sign with the prepared key of `alg` yet: there is none (`'none prepared'`),
 * or it joined a key set that verifiers had already fetched less than NEW_KID_VISIBLE_SECONDS ago, and
 * scitokens-cpp refuses a kid missing from its cached set ("Key ID is not published by the issuer")
 * until its refresh, which may itself be served by an HTTP cache's older copy. A key prepared together with the first signing key (`keys init`, a new `serve`)
 * was in every key set ever served, so it may sign at once.
 */
function unpublishedRotation(store: KeyStore, alg: string, now: number): string | 'none prepared' | undefined {
  const ring = store.readKeyring()
  const prepared = ring.find((k) => isPreparedEntry(k) && k.alg === alg)
  if (!prepared) return 'none prepared'
  if (!preparedJoinedLater(store, alg, now) || now - prepared.created >= NEW_KID_VISIBLE_SECONDS) return undefined
  return `kid ${prepared.kid} is in /jwks only since ${iso(prepared.created)}: verifiers that fetched /jwks before then would refuse its tokens until they refetch (${REFETCH}); run "keys rotate" again after ${iso(prepared.created + NEW_KID_VISIBLE_SECONDS)}, or with --force to sign with it now (a stolen key: --compromised, which also unpublishes it)`
}

/**
 * Whether the prepared key of `alg` joined a key set already being served (an older key still published):
 * only then can a verifier hold a set without it. One made beside the first signing key never could.
 */
function preparedJoinedLater(store: KeyStore, alg: string, now: number): boolean {
  const ring = store.readKeyring()
  const prepared = ring.find((k) => isPreparedEntry(k) && k.alg === alg)
  if (!prepared) return false
  return ring.some((k) => k !== prepared && (k.publish_until === undefined || k.publish_until > now) && k.created < prepared.created)
}

/** Publishes a key of `alg` to sign with from a later rotation, keeping the signing key; audited like a rotation. */
async function publishFirst(store: KeyStore, alg: 'ES256' | 'RS256', now: number, audit: { record(e: AuditEvent): Promise<unknown> }, io: CommandIo, watch: boolean, again: string): Promise<void> {
  const signing = store.readKeyring().find((k) => k.retired === undefined && k.next !== true)
  const { entry } = store.prepareJwtKeyFor(alg, now)
  io.out(`SciToken key: no ${alg} key was published to sign with; published kid=${entry.kid} alg=${alg} now${signing ? `, kid=${signing.kid} keeps signing` : ''}`)
  io.out(`  run "${again}" again after ${iso(now + NEW_KID_VISIBLE_SECONDS)}, when verifiers have refetched /jwks (${REFETCH}), or with --force to sign with it now`)
  try {
    await audit.record({
      type: 'key.rotated', time: now, caller: { sub: `cli:${userInfo().username}` }, decision: 'allow',
      reason: 'keys rotate: published a key to sign with from the next rotation; signing key unchanged',
      detail: { alg, next_kid: entry.kid, ...(signing ? { kid: signing.kid } : {}) },
    })
  } catch (err) {
    throw new CliError(`the key was published but this could not be audited: ${(err as Error).message}`)
  }
  io.out(watch ? '  recorded in the audit log; a running serve on this data directory publishes it within a second' : '  recorded in the audit log; send SIGHUP to a running serve (scitoken.watch_keys is off) to publish it')
}

/**
 * `keys rotate --compromised`: a fresh key signs and every key in /jwks leaves it now (key_store.ts says
 * why all of them). A thief's tokens verify for as long as verifiers find the kid in /jwks, so no key is
 * kept for its tokens to expire, and the cost, every outstanding SciToken refused, is said in one line.
 */
async function rotateCompromised(store: KeyStore, alg: 'ES256' | 'RS256', now: number, audit: { record(e: AuditEvent): Promise<unknown> }, io: CommandIo, watch: boolean): Promise<void> {
  const r = store.rotateCompromised(alg, now)
  const gone = r.unpublished.length > 0 ? r.unpublished.join(', ') : '(none)'
  io.out(`SciToken key: new active kid=${r.active.kid} alg=${r.active.alg}; next kid=${r.next.kid}`)
  io.out(`  unpublished from /jwks now and marked compromised: ${gone}${r.notRemoved.length === 0 ? ' (their jwt/<kid>.pem removed)' : ''}`)
  io.out(`  tokens signed with ${gone} are refused by verifiers once they refetch /jwks (${REFETCH}, so within ${NEW_KID_VISIBLE_SECONDS} s); their holders renew from the broker (the credmon at its next refresh, daemons and pilots at their next renewal), and the same wait applies before verifiers accept kid ${r.active.kid}`)
  try {
    await audit.record({
      type: 'key.rotated', time: now, caller: { sub: `cli:${userInfo().username}` }, decision: 'allow',
      reason: 'keys rotate --compromised: signing with a fresh key; the keys in /jwks unpublished at once',
      detail: { alg: r.active.alg, kid: r.active.kid, next_kid: r.next.kid, unpublished: r.unpublished, compromised: true, ...(r.notRemoved.length > 0 ? { not_removed: r.notRemoved.map((f) => f.file) } : {}), ...(r.left.length > 0 ? { left_in_place: r.left } : {}) },
    })
  } catch (err) {
    throw new CliError(`the compromised keys were unpublished and a fresh key signs, but this could not be audited: ${(err as Error).message}`)
  }
  if (r.left.length > 0) io.err(`note: left in place, as they are not keys of this broker's own and can never be in /jwks: ${r.left.join(', ')}`)
  // The keyring's mark keeps them out of /jwks here, but the stolen private key is still on disk, and a
  // binary from before the mark (a replica not yet upgraded) holds a key whose file is there.
  if (r.notRemoved.length > 0) {
    throw new CliError(`the compromised keys were unpublished, a fresh key signs and this was audited, but these private key files could not be removed; remove them by hand: ${r.notRemoved.map((f) => `${f.file} (${f.error})`).join('; ')}`)
  }
  io.out(watch
    ? '  recorded in the audit log; a running serve on this data directory takes it up within a second (SIGHUP forces it; send SIGHUP to replicas with scitoken.watch_keys off, or copy them the new keys/jwt/)'
    : '  recorded in the audit log; send SIGHUP to every running serve (scitoken.watch_keys is off) to take it up')
}
