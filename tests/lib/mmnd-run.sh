# SPDX-License-Identifier: GPL-2.0-or-later
# Start mmnd from a shell test and wait until it is ready (sourced, bash).
#
#   . "$(dirname "$0")/../../lib/mmnd-run.sh"
#   if mmnd_run_start "$dir" 20 "$mmnd" --source=uffd; then ...; fi
#   ... MMN_SOCKET="$dir/mmnd.sock" client ...
#   kill "$mmnd_pid"; wait "$mmnd_pid"       the caller stops it
#
# mmnd_run_start DIR TIMEOUT_S MMND [ARG...] runs
#   MMND --bus=none --socket=DIR/mmnd.sock --ready-fd=3 ARG...
# in the background with its stderr in DIR/mmnd.log, sets mmnd_pid, and
# waits at most TIMEOUT_S seconds for READY=1 on a FIFO (DIR/ready): the
# read returns at READY=1, or at EOF when mmnd exits first; never a sleep.
# Returns 0 when ready, 1 otherwise; mmnd_ready_line holds what was read.
# A failed start leaves mmnd_pid set: the caller's cleanup kills it.
#
# mmnd_run_stop stops that mmnd (if one runs) and clears mmnd_pid.
# mmnd_run_tmpdir makes $tmp, a private directory for the socket and the
# test's files, and an EXIT trap that stops mmnd and removes $tmp (the
# caller sets no EXIT trap of its own).

mmnd_run_start() {
	local dir=$1 timeout=$2 exe=$3
	shift 3
	mmnd_ready_line=
	rm -f "$dir/ready"
	mkfifo "$dir/ready" || return 1
	"$exe" --bus=none --socket="$dir/mmnd.sock" --ready-fd=3 "$@" 3>"$dir/ready" 2>"$dir/mmnd.log" &
	mmnd_pid=$!
	read -r -t "$timeout" mmnd_ready_line <"$dir/ready" && [ "$mmnd_ready_line" = READY=1 ]
}

mmnd_run_stop() {
	[ -n "${mmnd_pid:-}" ] && kill "$mmnd_pid" 2>/dev/null && wait "$mmnd_pid" 2>/dev/null
	mmnd_pid=
}

mmnd_run_tmpdir() {
	mmnd_pid=
	tmp=$(mktemp -d) || { echo "Bail out! mktemp failed"; exit 1; }
	trap 'mmnd_run_stop; rm -rf "$tmp"' EXIT
}
