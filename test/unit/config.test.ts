import { chmodSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { ConfigurationError } from '../../src/errors.ts'

function yamlFile(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'ctb-cfg-')), 'broker.yaml')
  writeFileSync(f, text)
  return f
}

describe('loadConfig', () => {
  it('serves on embedded defaults with no file', () => {
    const c = loadConfig({ env: {} })
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8443 })
    expect(c.tls.mode).toBe('auto')
    expect(c.issuer).toBe('https://localhost:8443')
    expect(c.idtoken.key).toBe('broker1')
  })
  it('reads YAML and lets CTB_* variables override leaves', () => {
    const f = yamlFile('trust_domain: pool.example.org\nlisten:\n  port: 9000\n')
    const c = loadConfig({ file: f, env: { CTB_LISTEN_PORT: '9100', CTB_SCITOKEN_ALG: 'RS256' } })
    expect(c.trust_domain).toBe('pool.example.org')
    expect(c.listen.port).toBe(9100)
    expect(c.scitoken.alg).toBe('RS256')
  })
  it('names each bad field on its own line without echoing values', () => {
    const f = yamlFile('issuer: http://secret-host.example\nlisten:\n  port: nope\n')
    let msg = ''
    try { loadConfig({ file: f, env: { CTB_SCITOKEN_ALG: 'HS256-supersecret' } }) } catch (e) { msg = (e as Error).message }
    expect(msg).toMatch(/^ {2}\S+broker\.yaml:1:9: issuer: /m)
    expect(msg).toMatch(/^ {2}\S+broker\.yaml:3:9: listen\.port: /m)
    expect(msg).toMatch(/^ {2}scitoken\.alg: .*\(from CTB_SCITOKEN_ALG\)$/m)
    expect(msg).not.toContain('supersecret')
    expect(msg).not.toContain('nope')
  })
  it('reports YAML syntax errors with a line number', () => {
    const f = yamlFile('listen:\n  port: [1,\n')
    expect(() => loadConfig({ file: f, env: {} })).toThrow(/broker\.yaml:\d+:\d+/)
  })
  it('rejects a trust domain with a comma', () => {
    expect(() => loadConfig({ env: { CTB_TRUST_DOMAIN: 'a,b' } })).toThrow(/trust_domain: must not contain a comma/)
  })
  it('says a trust domain with a space has a space, not that it is not printable', () => {
    let msg = ''
    try { loadConfig({ file: yamlFile('trust_domain: "pool example.org"\n'), env: {} }) } catch (e) { msg = (e as Error).message }
    expect(msg).toMatch(/broker\.yaml:1:15: trust_domain: must not contain spaces or tabs/)
    expect(msg).not.toMatch(/printable/)
  })
  it('refuses a misspelt key, nested or not, at its line and column', () => {
    const f = yamlFile('issuer: https://broker.example.org\ntls:\n  mdoe: files\n  cert_file: /etc/tls.crt\nlisten:\n  port: 8443\nlsiten: {}\n')
    let msg = ''
    try { loadConfig({ file: f, env: {} }) } catch (e) { msg = (e as Error).message }
    expect(msg.split('\n').slice(1)).toEqual([
      `  ${f}:3:3: tls: unknown key "mdoe"`,
      // With mode misspelt it is auto, where a certificate file is never read.
      `  ${f}:4:14: tls.cert_file: applies only to tls.mode "files" (this one is "auto")`,
      `  ${f}:7:1: (top level): unknown key "lsiten"`,
    ])
  })
  it('refuses unknown keys inside list items and sub-sections', () => {
    const f = yamlFile('iam:\n  issuers:\n    - issuer: https://iam.example.org/\n      audiense: https://broker.example.org\naudit:\n  sqlite:\n    synchronus: normal\n')
    expect(() => loadConfig({ file: f, env: {} })).toThrow(/broker\.yaml:4:7: iam\.issuers\.0: unknown key "audiense"\n.*broker\.yaml:7:5: audit\.sqlite: unknown key "synchronus"/)
  })
  it('refuses an unknown CTB_* variable', () => {
    expect(() => loadConfig({ env: { CTB_LISTEN_PROT: '9000' } })).toThrow(/CTB_LISTEN_PROT: unknown configuration variable/)
  })
  it('accepts durations in the syntax policies use, from the file and the environment', () => {
    const f = yamlFile('idtoken:\n  default_lifetime: 1h\n  max_lifetime: 7d\nscitoken:\n  default_lifetime: 20m\n  max_lifetime: 6h\niam:\n  jwks_cache_seconds: 6h\n')
    const c = loadConfig({ file: f, env: { CTB_REVOCATION_REFRESH_SECONDS: '10s', CTB_AUDIT_PRUNE_INTERVAL: '1h' } })
    expect(c.idtoken).toMatchObject({ default_lifetime: 3600, max_lifetime: 604800 })
    expect(c.scitoken).toMatchObject({ default_lifetime: 1200, max_lifetime: 21600 })
    expect(c.iam.jwks_cache_seconds).toBe(21600)
    expect(c.revocation.refresh_seconds).toBe(10)
    expect(c.audit.prune_interval).toBe(3600)
  })
  // A timer's delay is a 32-bit count of milliseconds: Node runs a longer interval every 1 ms instead (with
  // a warning), so `anchor_interval: 30d` re-checked and re-sealed the whole log back to back, for ever.
  it('bounds the audit timers to what a timer can wait (2147483 s, about 24 days)', () => {
    const err = (text: string) => { try { loadConfig({ file: yamlFile(text), env: {} }); return '' } catch (e) { return (e as Error).message } }
    expect(err('audit:\n  anchor_interval: 30d\n')).toMatch(/audit\.anchor_interval: must be at most 2147483 seconds/)
    expect(err('audit:\n  prune_interval: 30d\n')).toMatch(/audit\.prune_interval: must be at most 2147483 seconds/)
    expect(loadConfig({ file: yamlFile('audit:\n  anchor_interval: 24d\n  prune_interval: 24d\n'), env: {} }).audit).toMatchObject({ anchor_interval: 2073600, prune_interval: 2073600 })
  })
  // docs/audit.md, "A server that stops answering": 30 s and 3600 s by default, 0 for none, a timer's bound at most.
  it('reads the PostgreSQL statement bounds: defaults, durations, 0 for none, nothing negative or past a timer', () => {
    expect(loadConfig({ env: {} }).audit.postgres).toMatchObject({ query_timeout_seconds: 30, long_query_timeout_seconds: 3600 })
    const c = loadConfig({ env: { CTB_AUDIT_POSTGRES_QUERY_TIMEOUT_SECONDS: '2m', CTB_AUDIT_POSTGRES_LONG_QUERY_TIMEOUT_SECONDS: '0' } })
    expect(c.audit.postgres).toMatchObject({ query_timeout_seconds: 120, long_query_timeout_seconds: 0 })
    const err = (text: string) => { try { loadConfig({ file: yamlFile(text), env: {} }); return '' } catch (e) { return (e as Error).message } }
    expect(err('audit:\n  postgres:\n    query_timeout_seconds: -1\n')).toMatch(/audit\.postgres\.query_timeout_seconds: must be at least 0 seconds/)
    expect(err('audit:\n  postgres:\n    long_query_timeout_seconds: 30d\n')).toMatch(/audit\.postgres\.long_query_timeout_seconds: must be at most 2147483 seconds/)
  })
  it.each([
    ['a port', 'listen:\n  port: nope\n', /listen\.port: must be a number$/m],
    ['a lifetime', 'idtoken:\n  max_lifetime: a week\n', /idtoken\.max_lifetime: must be a number of seconds \(3600\) or a duration such as 90s/],
    ['a boolean', 'log:\n  requests: yes please\n', /log\.requests: must be true or false/],
  ])('says what is wrong with a non-numeric %s, never "NaN"', (_n, text, expected) => {
    let msg = ''
    try { loadConfig({ file: yamlFile(text), env: {} }) } catch (e) { msg = (e as Error).message }
    expect(msg).toMatch(expected)
    expect(msg).not.toMatch(/NaN/)
  })
  it('says what is wrong with a non-numeric environment override, never "NaN"', () => {
    let msg = ''
    try { loadConfig({ env: { CTB_LISTEN_PORT: 'eighty', CTB_IAM_TIMEOUT_SECONDS: 'soon' } }) } catch (e) { msg = (e as Error).message }
    expect(msg).toMatch(/listen\.port: must be a number \(from CTB_LISTEN_PORT\)/)
    expect(msg).toMatch(/iam\.timeout_seconds: .* \(from CTB_IAM_TIMEOUT_SECONDS\)/)
    expect(msg).not.toMatch(/NaN/)
  })
  it('bounds slow clients by default and refuses a headers timeout beyond the request timeout', () => {
    const c = loadConfig({ env: {} })
    expect(c.http).toEqual({
      headers_timeout_ms: 10_000, request_timeout_ms: 30_000, keep_alive_timeout_ms: 5_000, idle_timeout_ms: 120_000,
      max_headers_count: 100, max_header_bytes: 16_384, max_connections: 1024, max_connections_per_client: 64,
    })
    expect(loadConfig({ env: { CTB_HTTP_REQUEST_TIMEOUT_MS: '2000', CTB_HTTP_HEADERS_TIMEOUT_MS: '1000' } }).http.request_timeout_ms).toBe(2000)
    expect(() => loadConfig({ env: { CTB_HTTP_REQUEST_TIMEOUT_MS: '1000', CTB_HTTP_HEADERS_TIMEOUT_MS: '2000' } })).toThrow(/http\.headers_timeout_ms/)
  })
  // RFC 8414 §2 and OpenID Connect Discovery §3: an issuer is https with no query or fragment; discovery is
  // found by appending /.well-known/openid-configuration, which a query or fragment would swallow. A user
  // and password would be copied into the iss of every token, into discovery and into the logs.
  it.each([
    ['a user and password', 'https://ctb:s3cret@broker.example.org', 'must not contain a user name or password'],
    ['a user name', 'https://ctb@broker.example.org', 'must not contain a user name or password'],
    ['a query', 'https://broker.example.org/?tenant=cms', 'must not contain a query (?...) or fragment (#...)'],
    ['an empty query', 'https://broker.example.org/?', 'must not contain a query (?...) or fragment (#...)'],
    ['a fragment', 'https://broker.example.org/#x', 'must not contain a query (?...) or fragment (#...)'],
  ])('refuses an issuer with %s, without echoing it', (_what, issuer, message) => {
    const f = yamlFile(`issuer: ${issuer}\n`)
    let msg = ''
    try { loadConfig({ file: f, env: {} }) } catch (e) { msg = (e as Error).message }
    expect(msg).toContain(`broker.yaml:1:9: issuer: ${message}`)
    expect(msg).not.toContain(issuer)
    expect(() => loadConfig({ env: { CTB_ISSUER: issuer } })).toThrow(`issuer: ${message} (from CTB_ISSUER)`)
  })
  it('takes an issuer with a path', () => {
    expect(loadConfig({ env: { CTB_ISSUER: 'https://broker.example.org/ctb' } }).issuer).toBe('https://broker.example.org/ctb')
  })

  // Whoever can write broker.yaml chooses the policy directory, the IAM trusted and the keys: a file any
  // user may write is refused, as sshd's StrictModes does. Group write stays allowed (root:admins 0664).
  it('refuses a config file writable by other users, naming the mode and the fix', () => {
    const f = yamlFile('listen:\n  port: 8443\n')
    chmodSync(f, 0o666)
    expect(() => loadConfig({ file: f, env: {} })).toThrow(`${f} is writable by every user (mode 0666), who could change what the broker trusts; chmod o-w ${f}`)
    chmodSync(f, 0o664)
    expect(loadConfig({ file: f, env: {} }).listen.port).toBe(8443)
  })

  // A 0644 broker.yaml in a directory every user may write (no sticky bit) is anyone's: they can rename a file
  // of their own over it. A link is followed to the file it names, whose directory is the one that counts.
  it('refuses a config file in a directory every user may write, or a link to one there', () => {
    const shared = mkdtempSync(join(tmpdir(), 'ctb-shared-'))
    const f = join(shared, 'broker.yaml')
    writeFileSync(f, 'listen:\n  port: 8443\n', { mode: 0o644 })
    chmodSync(shared, 0o777)
    const want = `${f} is under ${shared}, a directory every user may write (mode 0777), where anyone could put a file of their own in its place; chmod o-w ${shared}`
    expect(() => loadConfig({ file: f, env: {} })).toThrow(want)
    const link = join(mkdtempSync(join(tmpdir(), 'ctb-etc-')), 'broker.yaml')
    symlinkSync(f, link)
    expect(() => loadConfig({ file: link, env: {} })).toThrow(`${link} names ${f}, which is under ${shared}, a directory every user may write (mode 0777), where anyone could put a file of their own in its place; chmod o-w ${shared}`)
    chmodSync(shared, 0o1777) // /tmp's mode: others may add files but not rename over this one
    expect(loadConfig({ file: f, env: {} }).listen.port).toBe(8443)
  })
  // A link to a link kept in the shared directory: anyone may rename a link of their own over the second one,
  // to a file in a directory of their own, though the file it ends at today is in a safe directory.
  it('refuses a config file reached through a link in a directory every user may write', () => {
    const shared = mkdtempSync(join(tmpdir(), 'ctb-shared-'))
    const f = join(mkdtempSync(join(tmpdir(), 'ctb-safe-')), 'broker.yaml')
    writeFileSync(f, 'listen:\n  port: 8443\n', { mode: 0o644 })
    symlinkSync(f, join(shared, 'current.yaml'))
    chmodSync(shared, 0o777)
    const link = join(mkdtempSync(join(tmpdir(), 'ctb-etc-')), 'broker.yaml')
    symlinkSync(join(shared, 'current.yaml'), link)
    expect(() => loadConfig({ file: link, env: {} })).toThrow(`${link} names ${f}, by way of ${shared}, a directory every user may write (mode 0777), where anyone could put a file of their own in its place; chmod o-w ${shared}`)
  })
  it('refuses a config file any number of directories below one every user may write', () => {
    const shared = mkdtempSync(join(tmpdir(), 'ctb-shared-'))
    const etc = join(shared, 'etc', 'ctb')
    mkdirSync(etc, { recursive: true, mode: 0o755 })
    const f = join(etc, 'broker.yaml')
    writeFileSync(f, 'listen:\n  port: 8443\n', { mode: 0o644 })
    chmodSync(shared, 0o777)
    expect(() => loadConfig({ file: f, env: {} })).toThrow(`${f} is under ${shared}, a directory every user may write (mode 0777), where anyone could put a file of their own in its place; chmod o-w ${shared}`)
  })

  // The documented place for the PostgreSQL password is the environment (CTB_AUDIT_POSTGRES_DSN, PGPASSWORD);
  // one written into broker.yaml is a secret like any key file, and a file every user may read gives it away.
  it.each([
    ['in the URL', 'postgres://broker:pg-s3cret@db.example.org/broker'],
    ['as a parameter', 'postgres://broker@db.example.org/broker?password=pg-s3cret'],
    // Forms a WHATWG URL parser refuses (credentials without a host) that pg reads all the same, putting a
    // placeholder host in: the Unix-socket DSN libpq documents, and pg's own socket: scheme.
    ['in the URL of a Unix-socket DSN', 'postgres://broker:pg-s3cret@/broker?host=/run/postgresql'],
    ['in a socket: URL', 'socket://broker:pg-s3cret@/run/postgresql?db=broker'],
    ['as a parameter of a Unix-socket DSN', 'postgres://broker@/broker?host=/run/postgresql&password=pg-s3cret'],
  ])('refuses a DSN with a password %s in a config file every user may read, without echoing it', (_where, dsn) => {
    const f = yamlFile(`audit:\n  store: postgres\n  postgres:\n    dsn: ${dsn}\n`)
    chmodSync(f, 0o644)
    let msg = ''
    try { loadConfig({ file: f, env: {} }) } catch (e) { msg = (e as Error).message }
    expect(msg).toBe(`audit.postgres.dsn in ${f} holds a password and the file is readable by every user (mode 0644); chmod o-r ${f}, or give the DSN in CTB_AUDIT_POSTGRES_DSN or the password in PGPASSWORD`)
    chmodSync(f, 0o640)
    expect(loadConfig({ file: f, env: {} }).audit.postgres.dsn).toBe(dsn)
  })
  it('takes a DSN without a password from a file every user may read, and one with a password from the environment', () => {
    const f = yamlFile('audit:\n  store: postgres\n  postgres:\n    dsn: postgres://broker@db.example.org/broker\n')
    chmodSync(f, 0o644)
    expect(loadConfig({ file: f, env: {} }).audit.postgres.dsn).toBe('postgres://broker@db.example.org/broker')
    expect(loadConfig({ file: f, env: { CTB_AUDIT_POSTGRES_DSN: 'postgres://broker:pw@db.example.org/broker' } }).audit.postgres.dsn).toBe('postgres://broker:pw@db.example.org/broker')
  })

  // A certificate and key named beside tls.mode auto or off were ignored: the development certificate, or
  // plain HTTP, served where the file says which certificate the admin meant to serve.
  it.each(['auto', 'off'])('refuses tls.cert_file and tls.key_file with tls.mode %s, at the line of each', (mode) => {
    const f = yamlFile(`issuer: https://broker.example.org\ntls:\n  mode: ${mode}\n  cert_file: /etc/ctb/tls.crt\n  key_file: /etc/ctb/tls.key\n`)
    let msg = ''
    try { loadConfig({ file: f, env: {} }) } catch (e) { msg = (e as Error).message }
    expect(msg).toContain(`broker.yaml:4:14: tls.cert_file: applies only to tls.mode "files" (this one is "${mode}")`)
    expect(msg).toContain(`broker.yaml:5:13: tls.key_file: applies only to tls.mode "files" (this one is "${mode}")`)
  })
  it('refuses a certificate file given with no tls.mode, which is auto', () => {
    expect(() => loadConfig({ env: { CTB_TLS_CERT_FILE: '/etc/ctb/tls.crt', CTB_TLS_KEY_FILE: '/etc/ctb/tls.key' } }))
      .toThrow('tls.cert_file: applies only to tls.mode "files" (this one is "auto") (from CTB_TLS_CERT_FILE)')
  })

  // ${TRUST_DOMAIN}, ${UID_DOMAIN} and ${BROKER_ISSUER} always stand for trust_domain, policy.uid_domain and
  // issuer (docs/policies.md); a policy.vars entry of that name was dropped without a word, so the policies
  // were judged with another value than the one the admin wrote.
  it.each(['TRUST_DOMAIN', 'UID_DOMAIN', 'BROKER_ISSUER'])('refuses policy.vars %s, which is built in', (name) => {
    const f = yamlFile(`policy:\n  vars:\n    IAM_ISSUER: https://iam.example.org/\n    ${name}: other.example.org\n`)
    // At the value: four spaces, the name, ": ".
    expect(() => loadConfig({ file: f, env: {} })).toThrow(`broker.yaml:4:${4 + name.length + 3}: policy.vars.${name}: is built in and cannot be set here`)
    expect(() => loadConfig({ env: { CTB_POLICY_VARS: `${name}=x` } })).toThrow(`policy.vars.${name}: is built in and cannot be set here`)
  })

  // YAML that parses but cannot be resolved into values (an alias to no anchor; aliases that expand without
  // bound) is a configuration error like any other: ConfigurationError, which serve exits 78 on and the
  // systemd unit does not restart, not an internal error (exit 70, restarted every 5 s for ever).
  it.each([
    ['an alias to no anchor', 'trust_domain: *nowhere\n'],
    ['an alias bomb', ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`)].join('\n') + '\n'],
  ])('refuses %s as a configuration error naming the file', (_what, text) => {
    const f = yamlFile(text)
    let err: unknown
    try { loadConfig({ file: f, env: {} }) } catch (e) { err = e }
    expect(err).toBeInstanceOf(ConfigurationError)
    expect((err as ConfigurationError).code).toBe('ECONFIG')
    expect((err as Error).message).toMatch(new RegExp(`^invalid configuration:\\n  ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `))
  })

  // The position is the alias that failed, not the first alias in the file: one that resolves may come first.
  it('points at the alias to no anchor, after an alias that resolves', () => {
    const f = yamlFile('listen:\n  host: &h 127.0.0.1\ncredentials:\n  vault:\n    host: *h\ntrust_domain: *nowhere\n')
    expect(() => loadConfig({ file: f, env: {} })).toThrow(`invalid configuration:\n  ${f}:6:15: Unresolved alias (the anchor must be set before the alias): nowhere`)
  })

  it('requires a public issuer behind a TLS proxy', () => {
    expect(() => loadConfig({ env: { CTB_TLS_MODE: 'off' } })).toThrow(/issuer/)
  })
})

describe('credentials section', () => {
  const err = (text: string) => { try { loadConfig({ file: yamlFile(text), env: {} }); return '' } catch (e) { return (e as Error).message } }
  it('accepts providers of both kinds and defaults the Vault listener to port 8200', () => {
    const c = loadConfig({ file: yamlFile('credentials:\n  enabled: true\n  providers:\n    - { name: cms, kind: iam, role: job }\n    - { name: se-1, kind: scitoken, role: st }\n  vault: { enabled: true }\n'), env: {} })
    expect(c.credentials.providers.map((p) => p.name)).toEqual(['cms', 'se-1'])
    expect(c.credentials.vault).toMatchObject({ enabled: true, port: 8200 })
  })
  it('refuses what would break HTCondor names, duplicates, a key in a CTB_ variable, and half-enabled setups', () => {
    expect(err('credentials:\n  enabled: true\n  providers: [{ name: cms_x, kind: iam, role: job }]\n')).toMatch(/providers\.0\.name: must be 1 to 64 letters, digits or "-"/)
    expect(err('credentials:\n  enabled: true\n  providers: [{ name: cms, kind: iam, role: a }, { name: cms, kind: scitoken, role: b }]\n')).toMatch(/provider "cms" is defined twice/)
    expect(err('credentials:\n  enabled: true\n  providers: [{ name: cms, kind: vault, role: a }]\n')).toMatch(/providers\.0\.kind/)
    expect(err('credentials:\n  key_env: CTB_SECRET\n')).toMatch(/must not start with CTB_/)
    expect(err('credentials:\n  enabled: true\n')).toMatch(/needs at least one provider/)
    expect(err('credentials:\n  vault: { enabled: true }\n')).toMatch(/needs credentials\.enabled/)
    // The credd allow-list moved into policy: an old config says where it went.
    expect(err('credentials:\n  enabled: true\n  credd_roles: [credd]\n  providers: [{ name: cms, kind: iam, role: a }]\n')).toMatch(/credentials\.credd_roles: is gone: .*fetched_by/)
  })
  it('refuses a Vault public_url HTCondor\'s Vault credmon would refuse in every .top (https, port 8200, no path)', () => {
    // The Vault credmon reads only vault_url with scheme https, port 8200 and a path starting /v1; the
    // broker appends /v1/secret/oauth/creds/... to public_url.
    const base = 'credentials:\n  enabled: true\n  providers: [{ name: cms, kind: iam, role: a }]\n  vault:\n    enabled: true\n    public_url: '
    expect(loadConfig({ file: yamlFile(`${base}https://broker.example.org:8200\n`), env: {} }).credentials.vault.public_url).toBe('https://broker.example.org:8200')
    expect(loadConfig({ file: yamlFile(`${base}https://broker.example.org:8200/\n`), env: {} }).credentials.vault.enabled).toBe(true)
    for (const url of ['https://broker.example.org', 'https://broker.example.org:8443', 'https://broker.example.org:8200/vault', 'http://broker.example.org:8200', 'https://user:secret@broker.example.org:8200']) {
      expect(err(`${base}${url}\n`)).toMatch(/credentials\.vault\.public_url: .*8200/)
    }
    expect(err(`${base}not-a-url\n`)).toMatch(/credentials\.vault\.public_url: /)
    // Without public_url the .top names https://localhost:<port>: on another port than 8200, unusable.
    const noUrl = 'credentials:\n  enabled: true\n  providers: [{ name: cms, kind: iam, role: a }]\n  vault:\n    enabled: true\n    port: '
    expect(err(`${noUrl}8201\n`)).toMatch(/credentials\.vault\.public_url: is needed when vault\.port is not 8200/)
    expect(loadConfig({ file: yamlFile(`${noUrl}8201\n    public_url: https://broker.example.org:8200\n`), env: {} }).credentials.vault.port).toBe(8201)
    expect(loadConfig({ file: yamlFile(`${noUrl}8200\n`), env: {} }).credentials.vault.port).toBe(8200)
  })
  it('rechecks scitoken users at IAM hourly by default; the interval is bounded to 1 minute .. 1 day, the grace to at most 1 day', () => {
    const base = 'credentials:\n  enabled: true\n  providers: [{ name: se, kind: scitoken, role: st }]\n'
    expect(loadConfig({ file: yamlFile(base), env: {} }).credentials).toMatchObject({ iam_recheck_interval: 3600 })
    expect(loadConfig({ file: yamlFile(base), env: {} }).credentials.iam_recheck_grace).toBeUndefined()
    expect(loadConfig({ file: yamlFile(`${base}  iam_recheck_interval: 20m\n  iam_recheck_grace: 0\n`), env: {} }).credentials).toMatchObject({ iam_recheck_interval: 1200, iam_recheck_grace: 0 })
    expect(err(`${base}  iam_recheck_interval: 30s\n`)).toMatch(/credentials\.iam_recheck_interval: must be at least 60 seconds/)
    expect(err(`${base}  iam_recheck_interval: 2d\n`)).toMatch(/credentials\.iam_recheck_interval: must be at most 86400 seconds/)
    expect(err(`${base}  iam_recheck_grace: 2d\n`)).toMatch(/credentials\.iam_recheck_grace: must be at most 86400 seconds/)
  })
})

describe('admin.console session limits', () => {
  it('defaults to a 30-minute idle timeout, 8 hours at most, and a cookie that ends with the browser', () => {
    expect(loadConfig({ env: {} }).admin.console).toMatchObject({ session_seconds: 8 * 3600, idle_seconds: 1800, persistent_cookie: false })
  })
  it('takes idle_seconds as a duration and persistent_cookie as a boolean; refuses an idle timeout under a minute', () => {
    const c = loadConfig({ file: yamlFile('admin:\n  console:\n    idle_seconds: 15m\n    persistent_cookie: true\n'), env: {} })
    expect(c.admin.console).toMatchObject({ idle_seconds: 900, persistent_cookie: true })
    expect(() => loadConfig({ file: yamlFile('admin:\n  console:\n    idle_seconds: 10s\n'), env: {} })).toThrow(/idle_seconds/)
  })
})

describe('config/broker.example.yaml', () => {
  it('is a valid configuration that documents every top-level section', () => {
    const c = loadConfig({ file: 'config/broker.example.yaml', env: {} })
    expect(c.issuer).toBe('https://broker.example.org')
    const text = readFileSync('config/broker.example.yaml', 'utf8')
    for (const key of Object.keys(c).filter((k) => !['source', 'issuerDefaulted', 'trustDomainDefaulted'].includes(k))) expect(text).toMatch(new RegExp(`^${key}:`, 'm'))
  })
})
