import { z } from 'zod'
import { Bool, integer, MAX_TIMER_SECONDS, seconds } from '../lib/config_values.ts'
import { DEFAULT_IDLE_SECONDS } from '../console/sessions.ts'

/**
 * `audit:` section. Environment overrides follow the usual CTB_<PATH> rule, e.g.
 * CTB_AUDIT_STORE=postgres, CTB_AUDIT_POSTGRES_DSN=postgres://broker@db/broker (keep the password in the
 * environment or PGPASSWORD, not in the file).
 */
export const AuditConfigSchema = z.strictObject({
  /** sqlite: embedded file (one broker). postgres: several replicas sharing one chain. */
  store: z.enum(['sqlite', 'postgres']).default('sqlite'),
  sqlite: z.strictObject({
    /** Default: <data_dir>/audit.db */
    file: z.string().min(1).optional(),
    /** full: a committed record survives power loss (default); normal: survives only a process crash. */
    synchronous: z.enum(['full', 'normal']).default('full'),
    /**
     * thread: commits (and WAL checkpoints) in two worker threads, so the event loop keeps serving during
     * an fsync; inline: on the main thread, saving the threads' memory (~27 MB idle, docs/performance.md).
     */
    writer: z.enum(['thread', 'inline']).default('thread'),
  }).prefault({}),
  postgres: z.strictObject({
    /** libpq URL of a database the broker owns; the broker creates and migrates its tables. */
    dsn: z.string().min(1).optional(),
    pool_size: integer(2, 100).default(4),
    /**
     * Longest wait for the server's answer to one statement, in seconds; 0: no bound. A server that stops
     * answering without closing its connections (a hung host, a network black hole) otherwise holds every
     * request waiting on a record until the kernel gives up on TCP, minutes later; past the bound the
     * statement fails, its connection is discarded, and the request is answered 503 (docs/audit.md).
     */
    query_timeout_seconds: seconds({ min: 0, max: MAX_TIMER_SECONDS }).default(30),
    /**
     * The same bound for the statements whose work grows with the log rather than with a request: the schema
     * migration steps at start-up; retention's statements too, as a margin (each covers one chunk of a prune).
     */
    long_query_timeout_seconds: seconds({ min: 0, max: MAX_TIMER_SECONDS }).default(3600),
  }).prefault({}),
  /**
   * The audit MAC key (docs/audit.md, "Record MACs"): 32 random bytes, base64, mode 0600. Default
   * <data_dir>/keys/audit_mac.key. Every replica and every host that runs a CLI command writing records
   * needs the same file, as for the IDTOKEN key; created on first use outside production only.
   */
  mac_key_file: z.string().min(1).optional(),
  /** Keep records this many days; 0 keeps everything. Pruned records leave a checkpoint in the chain. */
  retention_days: integer(0).default(0),
  /** How often serve prunes, in seconds. */
  prune_interval: seconds({ min: 60, max: MAX_TIMER_SECONDS }).default(3600),
  /**
   * How often serve re-checks the chain and the revocations table from its sealed anchor and seals a new
   * one (docs/audit.md); each check hashes the records appended since the last, about 1 s per 100,000.
   */
  anchor_interval: seconds({ min: 60, max: MAX_TIMER_SECONDS }).default(600),
  /**
   * How often serve writes the refusals of unauthenticated requests (unreadable body, subject token that
   * does not verify) as one `token.denied.aggregate` record, in seconds; also written at shutdown.
   */
  denied_aggregate_seconds: seconds({ min: 1, max: 3600 }).default(30),
  group_commit: z.strictObject({
    /** Most records per transaction. */
    max_batch: integer(1, 100_000).default(1000),
    /** Extra wait for a batch to fill; 0 = none (batches form by themselves under load). */
    max_wait_ms: integer(0, 1000).default(0),
    /** Records allowed to wait for a commit before new issuances fail fast. */
    max_pending: integer(1).default(50_000),
  }).prefault({}),
}).superRefine((a, ctx) => {
  if (a.store === 'postgres' && !a.postgres.dsn) {
    ctx.addIssue({ code: 'custom', path: ['postgres', 'dsn'], message: 'audit.store "postgres" needs audit.postgres.dsn (or CTB_AUDIT_POSTGRES_DSN)' })
  }
})

/** `admin:` section: who may call /v1/audit and /v1/revocations. */
export const AdminConfigSchema = z.strictObject({
  /**
   * File holding the bootstrap admin bearer token (one line, mode 0600), for automation before IAM-based
   * admins exist. Absent: no bootstrap token is accepted.
   */
  bootstrap_token_file: z.string().min(1).optional(),
  /** The web console at /console (docs/console.md). */
  console: z.strictObject({
    enabled: Bool.default(true),
    /** Longest session; a sign-in through IAM also ends when IAM's access token expires. */
    session_seconds: seconds({ min: 60, max: 7 * 86400 }).default(8 * 3600),
    /** A session without a request for this long is over (the server's check, not the cookie's). */
    idle_seconds: seconds({ min: 60, max: 7 * 86400 }).default(DEFAULT_IDLE_SECONDS),
    /**
     * false: the session cookie has no Max-Age, so it ends when the browser does; true: it is kept for
     * session_seconds across browser restarts (the server still ends the session when idle or at its limit).
     */
    persistent_cookie: Bool.default(false),
    /**
     * Sign-in through IAM: the trusted issuer (default: the first) whose `client` signs admins in with the
     * authorization code flow; that client needs the authorization_code grant and redirect_uri at IAM.
     */
    iam_issuer: z.string().min(1).optional(),
    /** Default: <issuer>/console/callback. */
    redirect_uri: z.string().url().optional(),
    /**
     * Where IAM sends the browser after ending its session at sign-out (RP-Initiated Logout 1.0; used only
     * when IAM's discovery names an end_session_endpoint). Register it at IAM with the client. Default: the
     * sign-in page beside redirect_uri, <issuer>/console/sign-in?signed-out.
     */
    post_logout_redirect_uri: z.string().url().optional(),
  }).prefault({}),
}).prefault({})

/** `revocation:` section. */
export const RevocationConfigSchema = z.strictObject({
  /** Re-read revocations this often so replicas and the CLI see each other's; a stale list can only over-revoke. */
  refresh_seconds: seconds({ min: 1, max: 3600 }).default(5),
}).prefault({})
