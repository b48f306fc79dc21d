#!/bin/sh
# condor-token-broker job wrapper, for HTCondor's USER_JOB_WRAPPER: run as `job_wrapper.sh JOB ARGS...`.
#
# HTCondor delivers a job's tokens as $_CONDOR_CREDS/<provider>[_<handle>].use (JSON with access_token, or
# the bare token) and refreshes them during the job, but never sets BEARER_TOKEN_FILE, which is where
# WLCG-aware tools (curl wrappers, gfal, xrdcp, davix) look. This wrapper keeps a bare 0600 copy of one
# .use in step with $_CONDOR_CREDS, points BEARER_TOKEN_FILE at it, and execs the job in its own place.
#
# Environment (set by the pool, e.g. STARTER_JOB_ENVIRONMENT, or by the job):
#   CTB_BEARER_TOKEN_USE         which .use to copy, without ".use" (e.g. scitokens or scitokens_store);
#                                default: the only .use, else scitokens.use
#   CTB_BEARER_REFRESH_SECONDS   how often to look for a newer .use (default 30; the starter refreshes
#                                $_CONDOR_CREDS every SEC_CREDENTIAL_REFRESH, 300 s by default)
# A BEARER_TOKEN_FILE the job already has is kept when that file exists.

# No -e: a failed copy must not stop the job; every step checks what it needs.
set -u

die_usage() { echo "job_wrapper.sh: usage: job_wrapper.sh JOB [ARGS...]" >&2; exit 2; }
[ $# -ge 1 ] || die_usage

creds=${_CONDOR_CREDS:-}

pick_use() {
	if [ -n "${CTB_BEARER_TOKEN_USE:-}" ]; then
		echo "$creds/$CTB_BEARER_TOKEN_USE.use"
		return
	fi
	only= count=0
	for f in "$creds"/*.use; do
		[ -f "$f" ] || continue
		count=$((count + 1))
		only=$f
	done
	if [ "$count" -eq 1 ]; then echo "$only"; else echo "$creds/scitokens.use"; fi
}

# The token in a .use file: "access_token" of the JSON form (one line or several), or the bare form's
# first line. Only token characters pass, so nothing else can end up in an Authorization header.
token_of() {
	tok=$(tr -d '\r\n' <"$1" 2>/dev/null) || return 1
	case $tok in
	"{"*) tok=$(printf '%s' "$tok" | sed -n 's/.*"access_token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p') ;;
	*) tok=$(printf '%s' "$tok" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//') ;;
	esac
	case $tok in
	"" | *[!A-Za-z0-9._~+/=-]*) return 1 ;;
	esac
	printf '%s' "$tok"
}

# Copies the token if it changed: temp file in the same directory, then rename, so a reader sees the
# old token or the new one, never half of one. umask 077 makes the copy 0600.
last=
sync_token() {
	tok=$(token_of "$use") || return 0
	[ "$tok" = "$last" ] && return 0
	if (umask 077 && printf '%s\n' "$tok" >"$dir/.token.tmp") && mv -f "$dir/.token.tmp" "$dir/token"; then
		last=$tok
	else
		rm -f "$dir/.token.tmp"
	fi
}

if [ -n "${BEARER_TOKEN_FILE:-}" ] && [ -f "$BEARER_TOKEN_FILE" ]; then
	exec "$@"
fi
[ -n "$creds" ] || exec "$@"
use=$(pick_use)
[ -f "$use" ] || exec "$@"

dir=$(umask 077 && mktemp -d "${_CONDOR_SCRATCH_DIR:-${TMPDIR:-/tmp}}/.bearer_token.XXXXXX") || exec "$@"
sync_token
if [ -z "$last" ]; then
	echo "job_wrapper.sh: $use holds no usable token; BEARER_TOKEN_FILE not set" >&2
	rmdir "$dir" 2>/dev/null
	exec "$@"
fi
BEARER_TOKEN_FILE=$dir/token
export BEARER_TOKEN_FILE

interval=${CTB_BEARER_REFRESH_SECONDS:-30}
case $interval in "" | *[!0-9]* | 0) interval=30 ;; esac

# The refresher. The job replaces this shell (exec below), so it keeps our pid: signals reach it directly,
# its stdin, exit status and death by signal are its own, and the starter sees no shell in between. The
# refresher polls that pid each second and ends, removing the copy, within a second of the job's end.
# Started from a subshell that exits at once, it is no child of the job (a job reaping every child, such
# as an init-like launcher, never sees it); its output goes nowhere, so it holds none of the job's pipes.
job=$$
(
	(
		n=0
		while kill -0 "$job" 2>/dev/null; do
			sleep 1
			n=$((n + 1))
			if [ "$n" -ge "$interval" ]; then
				n=0
				sync_token
			fi
		done
		rm -rf "$dir"
	) </dev/null >/dev/null 2>&1 &
)
exec "$@"
