#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# libfabric's MR cache (verbs provider on soft-RoCE) with and without
# libmmn-libfabric, in the QEMU guest (run-guest --numa --module mmn.ko,
# under tests/guest/lib/rxe-up).  consumers-libfabric uses only libfabric;
# mmnd runs on mmn.ko.  Each step is one TAP line; the program's own output
# becomes diagnostics.
#   reuse-syscall  raw munmap + mmap of a registered buffer (no libc hook
#                  sees it): without the adapter the cache hands out the old
#                  MR (stale=1); with it the registration misses (stale=0).
#   mprotect       a changed protection: a miss only with the adapter.
#   move           move_pages to the other node: a miss only with the adapter.
#   loop N         N distinct registrations freed as it goes: the adapter's
#                  subscriptions stay bounded (<= its cap) with no error; the
#                  rates with and without it are printed (same guest run).
#   SIGKILL        mmnd killed and restarted during a loop: the program
#                  still finishes (exit 0), the adapter got RESYNC (every
#                  cached range notified), and a reuse-syscall in the same
#                  process afterwards reads the new pages (stale=0).
#   test-libfabric-cache.sh MMND LIBMMN_LIBFABRIC CONSUMERS_LIBFABRIC
set -u
. "$(dirname "$0")/../../../lib/mmnd-run.sh"
mmnd=$1 adapter=$2 prog=$3
n=0
failed=0
tmp=$(mktemp -d) || { echo "Bail out! mktemp failed"; exit 1; }
mmnd_pid=
cleanup() {
	[ -n "$mmnd_pid" ] && kill "$mmnd_pid" 2>/dev/null && wait "$mmnd_pid" 2>/dev/null
	mmnd_pid=
}
trap 'cleanup; rm -rf "$tmp"' EXIT
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }

# field NAME: NAME=value from the last run's output.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$tmp/out" | tail -1; }
# run MODE [ENV...]: the program, 240 s at most (TCG); output in $tmp/out, $tmp/err.
run() {
	local mode=$1
	shift
	env "$@" timeout 240 "$prog" $mode >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	sed 's/^/#   /' "$tmp/out"
	sed 's/^/#   stderr: /' "$tmp/err"
	return $rc
}
with=(LD_PRELOAD="$adapter" MMN_SOCKET="$tmp/mmnd.sock" MMN_LIBFABRIC_STATS=1)
# expect DESC MODE KEY VALUE [ENV...]
expect() {
	local desc=$1 mode=$2 key=$3 want=$4 got
	shift 4
	if run "$mode" "$@"; then
		got=$(field "$key")
		[ "$got" = "$want" ] && ok "$desc: $key=$want" || not_ok "$desc: $key=$want (got '$got')"
	else
		not_ok "$desc: the program failed"
	fi
}

[ -n "${MMN_RXE_DEV:-}" ] || { echo "1..0 # SKIP no soft-RoCE device (run under rxe-up)"; exit 0; }
mmnd_run_start "$tmp" 20 "$mmnd" --source=kmod || { echo "Bail out! mmnd did not start: $(cat "$tmp/mmnd.log")"; exit 1; }

expect "reuse-syscall without mmn" reuse-syscall stale 1
expect "reuse-syscall with libmmn-libfabric" reuse-syscall stale 0 "${with[@]}"
expect "reuse-syscall with libmmn-libfabric" reuse-syscall miss 1 "${with[@]}"
expect "mprotect without mmn" mprotect miss 0
expect "mprotect with libmmn-libfabric" mprotect miss 1 "${with[@]}"
if [ -d /sys/devices/system/node/node1 ]; then
	expect "move_pages without mmn" move miss 0
	expect "move_pages with libmmn-libfabric" move miss 1 "${with[@]}"
else
	ok "move_pages # SKIP one NUMA node"
fi

loops=${MMN_LIBFABRIC_LOOPS:-2000}
run "loop $loops" && ok "loop $loops without mmn" || not_ok "loop $loops without mmn"
rate0=$(field regs_per_sec)
if run "loop $loops" "${with[@]}" MMN_LIBFABRIC_MAX_SUBS=256; then
	ok "loop $loops with libmmn-libfabric"
else
	not_ok "loop $loops with libmmn-libfabric"
fi
rate1=$(field regs_per_sec)
stats=$(grep '^libmmn-libfabric: subs ' "$tmp/err" | tail -1)
subs=$(sed -n 's/.* subs \([0-9]*\) .*/\1/p' <<<"$stats")
errors=$(sed -n 's/.* errors \([0-9]*\).*/\1/p' <<<"$stats")
[ -n "$subs" ] && [ "$subs" -le 256 ] && ok "loop: the adapter held $subs subscriptions at the end (cap 256)" ||
	not_ok "loop: subscriptions bounded by the cap (got '$subs')"
[ "$errors" = 0 ] && ok "loop: no adapter error" || not_ok "loop: no adapter error (got '$errors')"
echo "# registrations/s: $rate0 without, $rate1 with libmmn-libfabric (ratio $(awk -v a="$rate1" -v b="$rate0" 'BEGIN { if (b > 0) printf "%.2f", a / b }'))"

# mmnd SIGKILLed while a loop runs, then restarted: the program finishes.
# The program's first line (its provider, printed before the loop) says it runs.
mkfifo "$tmp/fifo" || { echo "Bail out! mkfifo failed"; exit 1; }
env "${with[@]}" timeout 240 stdbuf -oL "$prog" loop-reuse "$loops" >"$tmp/fifo" 2>"$tmp/err" &
prog_pid=$!
exec 4<"$tmp/fifo"
read -r -t 120 first <&4 || first=
cat <&4 >"$tmp/out" &
cat_pid=$!
[ -n "$first" ] && ok "loop under way: $first" || not_ok "loop under way (no output)"
kill -KILL "$mmnd_pid"
wait "$mmnd_pid" 2>/dev/null
mmnd_pid=
mmnd_run_start "$tmp" 20 "$mmnd" --source=kmod || not_ok "mmnd restarted"
wait "$prog_pid" && ok "SIGKILL of mmnd during a loop: the program finishes" ||
	not_ok "SIGKILL of mmnd during a loop: the program finishes"
wait "$cat_pid"
exec 4<&-
sed 's/^/#   /' "$tmp/out" "$tmp/err"
resyncs=$(sed -n 's/^libmmn-libfabric: subs .* resyncs \([0-9]*\).*/\1/p' "$tmp/err" | tail -1)
[ -n "$resyncs" ] && [ "$resyncs" -ge 1 ] && ok "after the restart: RESYNC reached the adapter ($resyncs)" ||
	not_ok "after the restart: RESYNC reached the adapter (got '$resyncs')"
[ "$(field stale)" = 0 ] && ok "after the restart: reuse-syscall in the same process, stale=0" ||
	not_ok "after the restart: reuse-syscall in the same process, stale=0 (got '$(field stale)')"
cleanup
echo "1..$n"
exit $failed
