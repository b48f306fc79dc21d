export interface CredmonConfigInput {
  brokerUrl: string
  providers: string[]
  credDir: string
  tokenFile: string
  caFile?: string
  useFormat: string
  minimumSeconds?: number
  executable: string
  wrapperPath: string
}

/**
 * The HTCondor configuration that runs our credmon under the condor_master on an access point and the
 * job wrapper on execute points (docs/credmon.md). Knob names are HTCondor's; values are ours.
 */
export function credmonConfigSnippet(c: CredmonConfigInput): string {
  const args = [
    'credmon', '--broker', c.brokerUrl, '--providers', c.providers.join(','),
    '--cred-dir', '$(SEC_CREDENTIAL_DIRECTORY_OAUTH)', '--token-file', c.tokenFile,
    ...(c.caFile ? ['--ca-file', c.caFile] : []),
    ...(c.useFormat !== 'json' ? ['--use-format', c.useFormat] : []),
    ...(c.minimumSeconds !== undefined ? ['--minimum-seconds', String(c.minimumSeconds)] : []),
  ]
  const first = c.providers[0]!
  return `# ---- access point: the credd and condor-token-broker's credmon ----
# The credd stores <user>/<provider>.top here at submit time; the credmon writes <user>/<provider>.use.
# The directory is root:condor, mode 2770.
SEC_CREDENTIAL_DIRECTORY_OAUTH = ${c.credDir}
DAEMON_LIST = $(DAEMON_LIST) CREDD CREDMON_OAUTH
CREDMON_OAUTH = ${c.executable}
CREDMON_OAUTH_ARGS = ${args.join(' ')}
# ${c.tokenFile} holds the credd's IDTOKEN from this broker (role credd); the credmon presents it.
# Credentials travel from the access point to execute points: encrypt every session.
SEC_DEFAULT_ENCRYPTION = REQUIRED

# ---- execute points: BEARER_TOKEN_FILE for the job ----
# The wrapper copies $_CONDOR_CREDS/<provider>.use to a 0600 bare-token file, keeps it in step
# with the starter's refreshes (SEC_CREDENTIAL_REFRESH) and execs the job.
USER_JOB_WRAPPER = ${c.wrapperPath}
# Which .use becomes BEARER_TOKEN_FILE when a job has several (default: the only one, else scitokens).
STARTER_JOB_ENVIRONMENT = "CTB_BEARER_TOKEN_USE=${first}"

# ---- submit file: ask for the token ----
# use_oauth_services = ${first}
# ${first}_oauth_permissions = storage.read:/store/user/$(Owner)   (optional scopes)
# ${first}_oauth_resource = https://storage.example.org            (optional audience)`
}
