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
#                  libfabric's own MR cache statistics (FI_LOG_LEVEL=info)
#                  count the notify: 0 without, >= 1 with the adapter.
#   mprotect       a changed protection: a miss only with the adapter.
#   move           move_pages to the other node: a miss only with the adapter.
#   loop N         N distinct registrations freed as it goes: the adapter's
#                  subscriptions stay bounded (<= its cap) with no error; the
#                  rates with and without it are printed (same guest run).
#   SIGKILL        mmnd killed and restarted during a loop: the program
#                  still finishes (exit 0).
#   restart        mmnd killed and restarted while a process holds a cached
#                  registration; once the process reconnected: the cache
#                  misses for that buffer (resync_miss=1), the adapter got
#                  RESYNC, and a reuse-syscall through the new mmnd is an
#                  invalidation (more invalidations than RESYNCs), a miss
#                  and reads the new pages (stale=0).
#   test-libfabric-cache.sh MMND LIBMMN_LIBFABRIC CONSUMERS_LIBFABRIC
set -u
. "$(dirname "$0")/../../../lib/mmnd-run.sh"
mmnd=$1 adapter=$2 prog=$3
n=0
failed=0
mmnd_run_tmpdir
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
# libfabric's own view: the MR cache's statistics, which it logs at info
# level when the domain closes ("MR cache stats: searches S, deletes D,
# hits H notify N").  reuse-syscall searches the cache three times; the
# changed buffer's second registration is the one hit without mmn (the
# stale entry) and a miss after the adapter's notify.
cache_stat() { sed -n "s/.*MR cache stats: .* $1 \([0-9]*\).*/\1/p" "$tmp/err" | tail -1; }
fi_log=(FI_LOG_LEVEL=info FI_LOG_SUBSYS=mr)
if run reuse-syscall "${fi_log[@]}"; then
	got=$(cache_stat hits)
	[ "$got" = 1 ] && ok "libfabric's cache stats without mmn: hits 1 (the stale entry)" ||
		not_ok "libfabric's cache stats without mmn: hits 1 (got '$got')"
else
	not_ok "reuse-syscall with FI_LOG_LEVEL=info: the program failed"
fi
if run reuse-syscall "${with[@]}" "${fi_log[@]}"; then
	got="hits $(cache_stat hits) notify $(cache_stat notify)"
	[[ $got =~ ^hits\ 0\ notify\ [1-9] ]] && ok "libfabric's cache stats with libmmn-libfabric: $got" ||
		not_ok "libfabric's cache stats with libmmn-libfabric: hits 0, notify >= 1 (got '$got')"
else
	not_ok "reuse-syscall with libmmn-libfabric and FI_LOG_LEVEL=info: the program failed"
fi
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
env "${with[@]}" timeout 240 stdbuf -oL "$prog" loop "$loops" >"$tmp/fifo" 2>"$tmp/err" &
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

# mmnd restarted under a cached registration (the restart mode waits on
# stdin while it happens).  libmmn reconnects by itself (backoff up to 1 s);
# the new mmnd's log names the attach.
mkfifo "$tmp/in" "$tmp/fifo2" || { echo "Bail out! mkfifo failed"; exit 1; }
env "${with[@]}" timeout 240 stdbuf -oL "$prog" restart <"$tmp/in" >"$tmp/fifo2" 2>"$tmp/err" &
prog_pid=$!
exec 5>"$tmp/in" 6<"$tmp/fifo2"
first=
while read -r -t 120 line <&6; do # the provider line, then "registered"
	echo "#   $line"
	[ "$line" = registered ] && first=$line && break
done
[ -n "$first" ] && ok "restart: a registration is cached" || not_ok "restart: a registration is cached (no 'registered')"
kill -KILL "$mmnd_pid"
wait "$mmnd_pid" 2>/dev/null
mmnd_pid=
mmnd_run_start "$tmp" 20 "$mmnd" --source=kmod || not_ok "mmnd restarted"
timeout 60 tail -n +1 -f "$tmp/mmnd.log" | grep -q -m 1 ' attached' &&
	ok "restart: the process reconnected to the new mmnd" ||
	not_ok "restart: the process reconnected to the new mmnd (nothing in 60 s)"
echo go >&5
exec 5>&-
cat <&6 >"$tmp/out"
exec 6<&-
wait "$prog_pid" && ok "restart: the program finishes" || not_ok "restart: the program finishes"
sed 's/^/#   /' "$tmp/out" "$tmp/err"
for want in resync_miss=1 miss=1 stale=0; do
	got=$(field "${want%=*}")
	[ "$got" = "${want#*=}" ] && ok "restart: $want" || not_ok "restart: $want (got '$got')"
done
adapter_stat() { sed -n "s/^libmmn-libfabric: subs .* $1 \([0-9]*\).*/\1/p" "$tmp/err" | tail -1; }
resyncs=$(adapter_stat resyncs) invals=$(adapter_stat invalidations)
[ -n "$resyncs" ] && [ "$resyncs" -ge 1 ] && ok "restart: RESYNC reached the adapter ($resyncs)" ||
	not_ok "restart: RESYNC reached the adapter (got '$resyncs')"
[ -n "$invals" ] && [ -n "$resyncs" ] && [ "$invals" -gt "$resyncs" ] &&
	ok "restart: invalidations came through the new mmnd ($invals, of them $resyncs RESYNCs)" ||
	not_ok "restart: invalidations came through the new mmnd (got '$invals', RESYNCs '$resyncs')"
mmnd_run_stop
echo "1..$n"
exit $failed
