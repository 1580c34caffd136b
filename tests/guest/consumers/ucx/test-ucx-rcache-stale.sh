#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# UCX's registration cache with and without mmn, over soft-RoCE in the QEMU
# guest (run-guest --module mmn.ko, under tests/guest/lib/rxe-up, which
# exports MMN_RXE_DEV and MMN_RXE_GID_INDEX).  ucx-rcache-stale sends a
# buffer by RDMA READ rendezvous, replaces its pages behind UCX's back and
# sends again:
#   1. without the adapter it must read the old pages (stale=1: the bug is real here);
#   2. preloaded with libmmn-ucx, mmnd on mmn.ko: stale=0;
#   3. the same with mmnd on the userfaultfd source: stale=0.
# Each run's own TAP lines become diagnostics.
#   test-ucx-rcache-stale.sh MMND LIBMMN_UCX UCX_RCACHE_STALE
set -u
. "$(dirname "$0")/../../../lib/mmnd-run.sh"
mmnd=$1 adapter=$2 prog=$3
n=0
failed=0
mmnd_run_tmpdir

# run WHAT EXPECTED [ENV...]: one run of the program, 120 s at most (TCG).
run() {
	local what=$1 expected=$2 out
	shift 2
	n=$((n + 1))
	if out=$(env "$@" timeout 120 "$prog" "$expected" 2>"$tmp/err"); then
		echo "ok $n - $what: stale=$expected"
	else
		failed=1
		echo "not ok $n - $what: stale=$expected"
	fi
	sed 's/^/#   /' <<<"$out"
	sed 's/^/#   stderr: /' "$tmp/err"
}

[ -n "${MMN_RXE_DEV:-}" ] || { echo "1..0 # SKIP no soft-RoCE device (run under rxe-up)"; exit 0; }

run "without mmn" 1

for source in kmod uffd; do
	if ! mmnd_run_start "$tmp" 20 "$mmnd" --source=$source; then
		echo "Bail out! mmnd --source=$source did not start: $(cat "$tmp/mmnd.log")"
		exit 1
	fi
	run "libmmn-ucx, mmnd --source=$source" 0 LD_PRELOAD="$adapter" MMN_SOCKET="$tmp/mmnd.sock"
	mmnd_run_stop
done
echo "1..$n"
exit $failed
