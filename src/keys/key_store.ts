import { createPrivateKey, createPublicKey, generateKeyPairSync, createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { OperatorError } from '../errors.ts'
import type { AsymmetricAlg } from '../issuance/jws.ts'
import { prepareIdTokenKey, type IdTokenKey } from '../issuance/idtoken.ts'
import type { AsymmetricKey } from '../issuance/scitoken.ts'
import { readSecretFile, writeSecretFileAtomic } from '../lib/secure_file.ts'
import { assertKeyName, CONDOR_EXCLUDED_NAME, CONDOR_KEY_BYTES, generateCondorKeyFile } from './condor_key_file.ts'
import { algForKey, jwkThumbprint, publicJwk, type PublicJwk } from './jwk.ts'
import { withKeyringLock } from './keyring_lock.ts'

/** What `keys rotate --compromised` did: see KeyStore.rotateCompromised. */
export interface CompromisedRotation {
  unpublished: string[]
  active: KeyringEntry
  next: KeyringEntry
  notRemoved: { file: string; error: string }[]
  /** `.pem` files in jwt/ that are not keys of the broker's own, left where they are. */
  left: string[]
}

/** One asymmetric key's record in keyring.json. The private key lives beside it in `<kid>.pem` (0600). */
export interface KeyringEntry {
  kid: string
  alg: AsymmetricAlg
  /** Epoch seconds. */
  created: number
  /** Set when a newer key took over; the key then only verifies. */
  retired?: number
  /** Published in the JWKS until this time: every token it signed has expired by then. */
  publish_until?: number
  /** Published ahead of use and not signing yet; the next rotation makes it the active key. */
  next?: boolean
  /**
   * When `keys rotate --compromised` unpublished it (epoch seconds). Kept in the keyring for good, so that
   * nothing that publishes keys past their publish_until (held_publications.ts: a reload, a restart, a
   * replica whose copy of jwt/ still has the .pem) ever brings it back.
   */
  compromised?: number
}

/**
 * Verifiers cache the JWKS and do not refetch it for an unknown kid (scitokens-cpp keeps a fetched key set
 * 600 s, docs/htcondor-tokens.md §5.3): a key published only when it starts signing is refused there for
 * that long. So each rotation also publishes the key the following one will sign with.
 */
export const JWKS_REFRESH_SECONDS = 600

/**
 * The `max-age` /jwks is served with. scitokens-cpp ignores Cache-Control (its own 600 s refresh holds),
 * but a shared HTTP cache in front of the broker (reverse proxy, CDN) may serve a copy this old, and a
 * verifier refreshing from it sees a new kid that much later. Kept short, as it adds to every rotation wait.
 */
export const JWKS_MAX_AGE_SECONDS = 60

/**
 * How long a newly published kid takes to reach every verifier at the latest: a shared cache's copy made
 * just before it was published stays fresh for JWKS_MAX_AGE_SECONDS, and a verifier that refreshed from it
 * then keeps that set for JWKS_REFRESH_SECONDS. `keys rotate` signs with no kid published for less.
 */
export const NEW_KID_VISIBLE_SECONDS = JWKS_REFRESH_SECONDS + JWKS_MAX_AGE_SECONDS

/** The keyring entry that signs: not retired and not merely prepared. */
export function isSigningEntry(k: KeyringEntry): boolean {
  return k.retired === undefined && k.next !== true
}

/**
 * The keyring entry prepared to sign from the next rotation: flagged `next` and not retired. A binary from
 * before next keys may retire a prepared key and leave the flag it does not know: that entry is retired.
 */
export function isPreparedEntry(k: KeyringEntry): boolean {
  return k.next === true && k.retired === undefined
}

/**
 * The broker's keys on disk:
 *   <dir>/condor/<NAME>      HTCondor signing keys, scrambled, byte-compatible with passwords.d
 *   <dir>/jwt/keyring.json   asymmetric keys' metadata (no secrets)
 *   <dir>/jwt/<kid>.pem      PKCS#8 private keys
 * Directories are 0700 and files 0600; files with group/other bits are refused when read.
 */
export class KeyStore {
  readonly dir: string
  private readonly seam: { afterKeyFileWritten?: () => void }
  private readonly lockWaitMs: number
  /** `lockWaitMs`: how long a keyring change waits for another one in progress; `seam` is for tests. */
  constructor(dir: string, options: { lockWaitMs?: number; seam?: { afterKeyFileWritten?: () => void } } = {}) {
    this.dir = dir
    this.lockWaitMs = options.lockWaitMs ?? KEYRING_LOCK_WAIT_MS
    this.seam = options.seam ?? {}
  }

  private get condorDir(): string { return join(this.dir, 'condor') }
  private get jwtDir(): string { return join(this.dir, 'jwt') }

  condorKeyPath(name: string): string {
    assertKeyName(name)
    return join(this.condorDir, name)
  }

  hasCondorKey(name: string): boolean {
    return existsSync(this.condorKeyPath(name))
  }

  /** Creates a fresh 64-byte key like HTCondor's collector does (O_EXCL, 0600). */
  createCondorKey(name: string): string {
    const path = this.condorKeyPath(name)
    if (existsSync(path)) throw new OperatorError('EEXIST', `HTCondor key ${name} already exists at ${path}`)
    writeSecretFileAtomic(path, generateCondorKeyFile(), { exclusive: true })
    return path
  }

  /** Imports an existing pool key file byte for byte so the broker and the collector share one key. */
  importCondorKey(file: string, name = basename(file)): string {
    const bytes = readSecretFile(file)
    if (bytes.length === 0) throw new OperatorError('EEMPTY', `${file} is empty`)
    const path = this.condorKeyPath(name)
    if (existsSync(path)) throw new OperatorError('EEXIST', `HTCondor key ${name} already exists at ${path}`)
    writeSecretFileAtomic(path, bytes, { exclusive: true })
    return path
  }

  loadIdTokenKey(name: string): IdTokenKey {
    return loadIdTokenKeyFile(this.condorKeyPath(name), name)
  }

  listCondorKeys(): { name: string; path: string; bytes: number; mode: string; fingerprint: string }[] {
    if (!existsSync(this.condorDir)) return []
    return readdirSync(this.condorDir)
      .filter((n) => !CONDOR_EXCLUDED_NAME.test(n))
      .sort()
      .map((name) => {
        const path = join(this.condorDir, name)
        const st = statSync(path)
        // A fingerprint lets admins compare copies across hosts without showing key material.
        const fingerprint = createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16)
        return { name, path, bytes: st.size, mode: (st.mode & 0o777).toString(8).padStart(4, '0'), fingerprint }
      })
  }

  readKeyring(): KeyringEntry[] {
    const file = join(this.jwtDir, 'keyring.json')
    if (!existsSync(file)) return []
    try {
      const parsed = JSON.parse(readFileSync(file, 'utf8')) as { keys?: KeyringEntry[] }
      return Array.isArray(parsed.keys) ? parsed.keys : []
    } catch {
      throw new OperatorError('EKEYRING', `${file} is not valid JSON`)
    }
  }

  private writeKeyring(keys: KeyringEntry[]): void {
    writeSecretFileAtomic(join(this.jwtDir, 'keyring.json'), `${JSON.stringify({ keys }, null, 2)}\n`)
  }

  /**
   * Runs one keyring change (read, new key files, write) with no other process changing it meanwhile. A
   * change writes its `.pem` files before the keyring that lists them, from the keyring it read: a serve
   * starting beside `keys rotate` (or two rotations) would otherwise write its stale keyring over the
   * other's, and `--compromised`, taking the unlisted `.pem` of a preparation in progress for a leftover,
   * would remove a file the other then lists. The lock is `keys/.keyring.lock` (beside jwt/, which the
   * watcher watches): keyring_lock.ts.
   */
  private withKeyringLock<T>(change: () => T): T {
    return withKeyringLock(this.dir, this.lockWaitMs, change)
  }

  /** Generates a new asymmetric key and writes it; does not change which key is active. */
  private generateJwtKey(alg: AsymmetricAlg, now: number): KeyringEntry {
    const { privateKey } = alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 })
    const kid = jwkThumbprint(createPublicKey(privateKey))
    mkdirSync(this.jwtDir, { recursive: true, mode: 0o700 })
    writeSecretFileAtomic(join(this.jwtDir, `${kid}.pem`), privateKey.export({ format: 'pem', type: 'pkcs8' }) as string)
    this.seam.afterKeyFileWritten?.()
    return { kid, alg, created: now }
  }

  /** Ensures one active asymmetric key exists; returns it and whether it was created now. */
  ensureJwtKey(alg: AsymmetricAlg, now: number): { entry: KeyringEntry; created: boolean } {
    // Checked unlocked first: a serve on a read-only key directory that has its keys takes no lock.
    const existing = this.readKeyring().find(isSigningEntry)
    if (existing) return { entry: existing, created: false }
    return this.withKeyringLock(() => {
      const keys = this.readKeyring()
      const active = keys.find(isSigningEntry)
      if (active) return { entry: active, created: false }
      const entry = this.generateJwtKey(alg, now)
      this.writeKeyring([...keys, entry])
      return { entry, created: true }
    })
  }

  /** Ensures a prepared next key exists (published, not signing), so the next rotation needs no new kid. */
  prepareNextJwtKey(alg: AsymmetricAlg, now: number): KeyringEntry {
    const existing = this.readKeyring().find(isPreparedEntry)
    if (existing) return existing
    return this.withKeyringLock(() => {
      const keys = this.readKeyring()
      const prepared = keys.find(isPreparedEntry)
      if (prepared) return prepared
      const next: KeyringEntry = { ...this.generateJwtKey(alg, now), next: true }
      this.writeKeyring([...keys, next])
      return next
    })
  }

  /**
   * Ensures a prepared key of `alg` exists (published, not signing), next to any prepared key of another
   * algorithm: `keys rotate --alg` to an algorithm without one publishes it first rather than signing
   * with a kid verifiers have not fetched. `created` says whether it was made now.
   */
  prepareJwtKeyFor(alg: AsymmetricAlg, now: number): { entry: KeyringEntry; created: boolean } {
    return this.withKeyringLock(() => {
      const keys = this.readKeyring()
      const prepared = keys.find((k) => isPreparedEntry(k) && k.alg === alg)
      if (prepared) return { entry: prepared, created: false }
      const entry: KeyringEntry = { ...this.generateJwtKey(alg, now), next: true }
      this.writeKeyring([...keys, entry])
      return { entry, created: true }
    })
  }

  /**
   * Makes the prepared next key active (a new one when none of `alg` was prepared), keeps the old public
   * key published until every token it signed has expired (`retainSeconds` ≥ the longest lifetime it
   * could have signed), and prepares the key after it. `publishedSince` says since when the new active
   * key has been in the JWKS; absent, it is published only now. Expired entries are pruned.
   *
   * Every other entry without `retired` is retired alike, a prepared key not taken included: a binary from
   * before next keys (a downgrade, a replica not yet upgraded) signs with the first entry without
   * `retired`, so after its own rotation that may be the prepared key, and its rotations leave more than
   * one such entry. Dropping any of them could strand tokens it signed; one spare public key in the JWKS
   * costs nothing. A key once retired is never made active again.
   */
  rotateJwtKey(alg: AsymmetricAlg, now: number, retainSeconds: number): { retired?: KeyringEntry; active: KeyringEntry; next: KeyringEntry; publishedSince?: number } {
    return this.withKeyringLock(() => this.rotateJwtKeyLocked(alg, now, retainSeconds))
  }

  private rotateJwtKeyLocked(alg: AsymmetricAlg, now: number, retainSeconds: number): { retired?: KeyringEntry; active: KeyringEntry; next: KeyringEntry; publishedSince?: number } {
    const keys = this.readKeyring().filter((k) => k.compromised !== undefined || k.publish_until === undefined || k.publish_until > now)
    const current = keys.find(isSigningEntry)
    const prepared = keys.find((k) => isPreparedEntry(k) && k.alg === alg)
    const kept = keys.filter((k) => k !== prepared).map((k): KeyringEntry => {
      const { next: _wasPrepared, ...entry } = k
      return k.retired !== undefined ? entry : { ...entry, retired: now, publish_until: now + retainSeconds }
    })
    // `created` is when it started signing (the key age /metrics reports).
    const active: KeyringEntry = prepared ? { kid: prepared.kid, alg: prepared.alg, created: now } : this.generateJwtKey(alg, now)
    const next: KeyringEntry = { ...this.generateJwtKey(alg, now), next: true }
    this.writeKeyring([...kept, active, next])
    const retired = current ? kept.find((k) => k.kid === current.kid) : undefined
    return { ...(retired ? { retired } : {}), active, next, ...(prepared ? { publishedSince: prepared.created } : {}) }
  }

  /**
   * A compromised key's rotation: every key still published (active, prepared, retired) stops being
   * published now and is marked `compromised`, and a fresh key signs, with a fresh next key. All of them,
   * because their private keys lay in the same directory, with the same owner and mode, as the stolen
   * one, so none may be trusted to take over either. Their `.pem` files are removed (a binary from before
   * the mark lets a held key go when its file is gone). Nothing is pruned: marked entries stay for good.
   * A removal that fails is returned, not thrown: the keyring write already took the keys out of /jwks,
   * and the caller must still audit that change and name the private key file left on disk. A `.pem` in
   * jwt/ that is not a key of the broker's own is left in place and returned (`left`): no binary can
   * publish it, and it may be what an operator keeps for the incident.
   */
  rotateCompromised(alg: AsymmetricAlg, now: number): CompromisedRotation {
    return this.withKeyringLock(() => this.rotateCompromisedLocked(alg, now))
  }

  private rotateCompromisedLocked(alg: AsymmetricAlg, now: number): CompromisedRotation {
    // Expired entries and .pem files the keyring no longer lists are taken too: a serve that took a
    // rotation up late holds such a key in /jwks past its publish_until (reload_keys.ts, held_publications.ts)
    // for as long as its file is there, and its private key lay beside the stolen one.
    const listed = this.readKeyring()
    const unlisted: KeyringEntry[] = []
    const left: string[] = []
    for (const kid of this.jwtKeyFileKids().filter((kid) => !listed.some((k) => k.kid === kid))) {
      const own = this.ownKeyAlg(kid)
      if (own !== undefined) unlisted.push({ kid, alg: own, created: now })
      else left.push(join(this.jwtDir, `${kid}.pem`))
    }
    const keys = [...listed, ...unlisted]
    const unpublished: string[] = []
    const kept = keys.map((k): KeyringEntry => {
      if (k.compromised !== undefined) return k
      unpublished.push(k.kid)
      const { next: _wasPrepared, ...entry } = k
      return { ...entry, retired: k.retired ?? now, publish_until: now, compromised: now }
    })
    const active = this.generateJwtKey(alg, now)
    const next: KeyringEntry = { ...this.generateJwtKey(alg, now), next: true }
    this.writeKeyring([...kept, active, next])
    const notRemoved: { file: string; error: string }[] = []
    // Those an earlier run marked too: one interrupted between its keyring write and its removals left
    // their files, and running it again is how an operator finishes it.
    for (const kid of kept.map((k) => k.kid)) {
      if (!/^[A-Za-z0-9_-]+$/.test(kid)) continue
      const file = join(this.jwtDir, `${kid}.pem`)
      try {
        rmSync(file, { force: true })
      } catch (err) {
        notRemoved.push({ file, error: (err as Error).message })
      }
    }
    return { unpublished, active, next, notRemoved, left }
  }

  /**
   * The algorithm of `<kid>.pem` when it is a private key of ours named by its own thumbprint, as
   * publicJwkOf requires of a held key; its mode is not checked (a restore may have left it readable:
   * still one of the broker's keys).
   */
  private ownKeyAlg(kid: string): AsymmetricAlg | undefined {
    try {
      // Non-blocking, regular files only (readSecretFile): a FIFO would block with the keyring lock held.
      const key = createPrivateKey(readSecretFile(join(this.jwtDir, `${kid}.pem`), { anyMode: true }))
      return jwkThumbprint(createPublicKey(key)) === kid ? algForKey(key) : undefined
    } catch {
      return undefined
    }
  }

  /** The kids of the `<kid>.pem` files in jwt/ (temporary files and other names left out). */
  private jwtKeyFileKids(): string[] {
    if (!existsSync(this.jwtDir)) return []
    return readdirSync(this.jwtDir).filter((n) => /^[A-Za-z0-9_-]+\.pem$/.test(n)).map((n) => n.slice(0, -4))
  }

  /** The kids `keys rotate --compromised` unpublished: never published again, held or not. */
  compromisedKids(): Set<string> {
    return new Set(this.readKeyring().filter((k) => k.compromised !== undefined).map((k) => k.kid))
  }

  /** Loads the active signing key and the public keys to publish (active and still-needed retired ones). */
  loadAsymmetricKeys(now: number): { active: AsymmetricKey; jwks: PublicJwk[] } {
    const keys = this.readKeyring()
    const activeEntry = keys.find(isSigningEntry)
    if (!activeEntry) throw new OperatorError('ENOKEY', `no active SciToken signing key in ${this.jwtDir}; run "condor-token-broker keys init"`)
    const jwks: PublicJwk[] = []
    let active: AsymmetricKey | undefined
    for (const e of keys) {
      // A compromised entry is out whatever this host's clock says: its publish_until is the CLI host's
      // `now`, a replica running behind would still find it published, and its .pem is gone.
      if (e.compromised !== undefined || (e.publish_until !== undefined && e.publish_until <= now)) continue
      const { privateKey, publicKey, alg } = this.readJwtKey(e.kid)
      if (alg !== e.alg) throw new OperatorError('EKEYRING', `key ${e.kid}.pem does not match its keyring entry`)
      jwks.push(publicJwk(publicKey, alg, e.kid))
      if (e === activeEntry) active = { kid: e.kid, alg, privateKey, publicKey, created: e.created }
    }
    return { active: active!, jwks }
  }

  /**
   * The public key of `<kid>.pem`, whether or not the keyring still lists it: a key this broker held in
   * /jwks past its publish_until (held_publications.ts) is published from its own private key file, so
   * only a key the broker made can be published that way.
   */
  publicJwkOf(kid: string): PublicJwk {
    const { publicKey, alg } = this.readJwtKey(kid)
    return publicJwk(publicKey, alg, kid)
  }

  /** Whether `<kid>.pem` is still there (a kid that is no key id has none). */
  hasJwtKeyFile(kid: string): boolean {
    return /^[A-Za-z0-9_-]+$/.test(kid) && existsSync(join(this.jwtDir, `${kid}.pem`))
  }

  /** `<kid>.pem`, checked to be a key we publish whose RFC 7638 thumbprint is `kid`. */
  private readJwtKey(kid: string): { privateKey: ReturnType<typeof createPrivateKey>; publicKey: ReturnType<typeof createPublicKey>; alg: AsymmetricAlg } {
    // A kid is a base64url thumbprint: anything else could name a file outside the key directory.
    if (!/^[A-Za-z0-9_-]+$/.test(kid)) throw new OperatorError('EKEYRING', `"${kid}" is not a key id`)
    const pem = readSecretFile(join(this.jwtDir, `${kid}.pem`))
    let privateKey
    try {
      privateKey = createPrivateKey(pem)
    } catch (err) {
      // OpenSSL's own message ("DECODER routines::unsupported") names no file: say which one, so the
      // operator whose reload was refused knows which of the keyring's keys to restore.
      throw new OperatorError('EKEYRING', `key ${kid}.pem is not a PEM private key (${(err as Error).message})`)
    }
    const publicKey = createPublicKey(privateKey)
    const alg = algForKey(privateKey)
    if (jwkThumbprint(publicKey) !== kid) throw new OperatorError('EKEYRING', `key ${kid}.pem does not match its keyring entry`)
    return { privateKey, publicKey, alg }
  }
}

/**
 * How long a keyring change waits for one in progress: a change generates at most two keys (RSA 2048
 * takes well under a second each), so this is ample, and a CLI run still ends with a message.
 */
const KEYRING_LOCK_WAIT_MS = 10_000

/** Loads any HTCondor key file (from the store or `--key-file`), enforcing 0600-style permissions. */
export function loadIdTokenKeyFile(path: string, kid: string): IdTokenKey {
  return prepareIdTokenKey(kid, readCondorKeyFile(path))
}

/** The raw (scrambled) bytes of an HTCondor key file, refused when exposed, empty or too short to be one. */
export function readCondorKeyFile(path: string): Buffer {
  const bytes = readSecretFile(path)
  if (bytes.length === 0) throw new OperatorError('EEMPTY', `${path} is empty`)
  if (bytes.length < 16) throw new OperatorError('ESHORT', `${path} holds only ${bytes.length} bytes; HTCondor creates ${CONDOR_KEY_BYTES}`)
  return bytes
}
