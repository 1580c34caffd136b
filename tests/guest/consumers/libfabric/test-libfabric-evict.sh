#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# libfabric's own MR-cache eviction test, fi_mr_cache_evict of fabtests
# 1.17.0 (scripts/setup builds it), on the verbs provider over soft-RoCE in
# the QEMU guest (run-guest --module mmn.ko, under tests/guest/lib/rxe-up),
# with libmmn-libfabric preloaded and, for comparison, without (libfabric's
# own memhooks monitor); mmnd runs on mmn.ko.  For each of its allocators
# (mmap, brk, sbrk) the program opens a fresh domain, registers a priming
# buffer, registers a buffer twice (the second a cache hit), frees and
# reallocates it at the same address and registers it a third time, which
# must miss the cache.  Its CUDA and ROCR cases skip.
#
# The program judges that by time (the third registration must not be as
# fast as a hit: over 20% of the first); tests here assert no timings, so
# its verdict and exit status are diagnostics only.  The TAP lines assert
# libfabric's own counters instead, which its MR cache logs when the domain
# closes (FI_LOG_LEVEL=info, "MR cache stats: searches 4, deletes D, hits
# 1"): four registrations, one hit (the second), so the one after the free
# missed.  With the adapter also: it was the monitor and the evictions came
# through mmn (its stats line at exit: subscribes > 0, notifies > 0,
# errors 0).  The program's output becomes diagnostics.
#   test-libfabric-evict.sh MMND LIBMMN_LIBFABRIC FI_MR_CACHE_EVICT
set -u
. "$(dirname "$0")/../../../lib/mmnd-run.sh"
mmnd=$1 adapter=$2 prog=$3
n=0
failed=0

[ -x "$prog" ] || {
	echo "1..0 # SKIP $prog is not installed (scripts/setup builds it from Debian's libfabric 1.17.0 source; its download or build failed, or setup was not run)"
	exit 0
}
[ -n "${MMN_RXE_DEV:-}" ] || { echo "1..0 # SKIP no soft-RoCE device (run under rxe-up)"; exit 0; }
mmnd_run_tmpdir
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
check() { local desc=$1; shift; if "$@"; then ok "$desc"; else not_ok "$desc"; fi; }

# run [ENV...]: the program on the verbs provider's rxe domain (no endpoint:
# it only registers), 120 s at most (TCG); output in $tmp/out, $tmp/err.
run() {
	env FI_UNIVERSE_SIZE=16 FI_LOG_LEVEL=info FI_LOG_SUBSYS=mr "$@" \
		timeout 120 "$prog" -p verbs -d "$MMN_RXE_DEV" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	sed 's/^/#   /' "$tmp/out"
	sed 's/^/#   stderr: /' "$tmp/err"
	return $rc
}
# counter NAME: the adapter's counter NAME from its stats line (stderr).
counter() { sed -n "s/^libmmn-libfabric: .*\b$1 \([0-9]*\).*/\1/p" "$tmp/err" | tail -1; }
# steps WHAT STATUS: one line per allocator from the last run.  Every domain
# logs its cache's counters at close: the first line is the program's
# initial domain, then one per allocator's test in order.
steps() {
	local what=$1 rc=$2 t i=1 verdict stats
	echo "# $what: exit status $rc; fabtests' timing verdict: $(grep '^Summary:' "$tmp/out" || echo none)"
	for t in mmap brk sbrk; do
		i=$((i + 1))
		verdict=$(sed -n "s/^Running mr_cache_${t}_test \[[^]]*\]\.\.\.//p" "$tmp/out")
		stats=$(grep -o 'MR cache stats: .*' "$tmp/err" | sed -n "${i}p")
		case $verdict in
		"skipped because"*)
			ok "$what: $t # SKIP the program skipped it: ${verdict#skipped because: }"
			continue
			;;
		esac
		if [[ $stats == *"searches 4, "*", hits 1 "* ]]; then
			ok "$what: $t: the registration after free + realloc missed the cache ($stats; timing verdict ${verdict:-none})"
		else
			not_ok "$what: $t: the registration after free + realloc missed the cache (want searches 4, hits 1; got '$stats'; timing verdict ${verdict:-none})"
		fi
	done
}

mmnd_run_start "$tmp" 20 "$mmnd" --source=kmod || { echo "Bail out! mmnd did not start: $(cat "$tmp/mmnd.log")"; exit 1; }

run LD_PRELOAD="$adapter" MMN_SOCKET="$tmp/mmnd.sock" MMN_LIBFABRIC_STATS=1
steps "with libmmn-libfabric" $?
subscribes=$(counter subscribes) notifies=$(counter notifies) errors=$(counter errors)
check "with libmmn-libfabric: the adapter was the monitor (subscribes '$subscribes' > 0)" \
	test "${subscribes:-0}" -gt 0
check "with libmmn-libfabric: evictions came through mmn (notifies '$notifies' > 0)" \
	test "${notifies:-0}" -gt 0
check "with libmmn-libfabric: no adapter error (errors '$errors')" test "$errors" = 0

run
steps "without mmn" $?
mmnd_run_stop
echo "1..$n"
exit $failed
