#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The end-to-end check of libmmn with the module, inside the QEMU guest with mmn.ko loaded and two NUMA
# nodes (run-guest --numa --module mmn.ko): examples/mirror --check keeps
# verifying that no entry of its "device page table" is stale while a
# workload does random mmap/munmap/madvise/mremap/mprotect/writes and its
# pages are moved between the nodes (move_pages), for 30 s:
#   1. mirror's own workload thread;
#   2. another process (mirror --workload-only) watched by mirror --pid.
# Each run must report stale=0 AND show that something happened (checks,
# invalidations, migrated pages): a run where nothing happened fails.  TAP,
# with the figures as diagnostics.
#
# Automatic NUMA balancing: run 1 has it off, run 2 on (the kernel's default
# with two nodes), and run 3 repeats run 1 with it on.  With it on, a
# self-subscribed process was evicted in two ways, both asserted against
# by run 3:
# - libmmn's dispatch thread took a NUMA hinting fault on locked memory
#   (mlock does not stop task_numa_work) while the workload held the mmap
#   lock waiting for that process's own ack (stack: lock_mm_and_find_vma <-
#   do_user_addr_fault while the workload sat in mmn_invalidate <-
#   unmap_vmas), until libmmn kept the memory that thread touches out of
#   NUMA balancing (client-lib/memory.h);
# - the sampling itself (task_numa_work) runs on a thread of the process on
#   its way back from a timer interrupt, at any instruction, and waits for
#   the ack of the protection change it makes: mirror's driver thread, in
#   the middle of holding the lock the callback takes, waited 1 s for a
#   callback that waited for it (kprobes on task_numa_work and mmn_wait_for
#   on 6.1), until the threads that hold that lock, and libmmn's own, got
#   a memory policy of their own, which that sampling skips (<mmn/mmn.h>).
#
#   test-mirror-guest.sh MMND MIRROR [DURATION_S]
set -u
. "$(dirname "$0")/../../lib/mmnd-run.sh"
mmnd=$1 mirror=$2 duration=${3:-30}
# Lower bounds for "something happened" in one run (measured under TCG:
# thousands of each in 12 s; see tests/guest/client/meson.build).
min_checks=100 min_invalidations=100 min_migrated=10
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
bail() { echo "Bail out! $*"; cleanup; exit 1; }
finish() {
	cleanup
	echo "1..$n"
	exit $failed
}

tmp=$(mktemp -d) || bail "mktemp failed"
mmnd_pid= work_pid=
cleanup() {
	[ -n "$work_pid" ] && kill "$work_pid" 2>/dev/null && wait "$work_pid" 2>/dev/null
	[ -n "$mmnd_pid" ] && kill "$mmnd_pid" 2>/dev/null && wait "$mmnd_pid" 2>/dev/null
	rm -rf "$tmp"
}

[ "$(id -u)" = 0 ] || skip_all "needs root (pagemap frame numbers, move_pages of another process)"
[ -d /sys/module/mmn ] || skip_all "mmn.ko is not loaded (run under run-guest --module)"
[ -d /sys/devices/system/node/node1 ] || skip_all "one NUMA node: no page migration between nodes (run-guest --numa)"
echo "# kernel $(uname -r), $(nproc) CPUs, numa_balancing=$(cat /proc/sys/kernel/numa_balancing)," \
	"THP $(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled)"

# field NAME LINE: the value of NAME=value in LINE (empty when absent).
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
# judge DESC OUTPUT_FILE STATUS: the assertions on one mirror report.
judge() {
	local desc=$1 out=$2 status=$3 line v
	sed 's/^/# /' "$out"
	line=$(grep '^mirror: source=' "$out" | tail -n 1)
	if [ -z "$line" ]; then
		not_ok "$desc: mirror printed its report (exit $status)"
		return
	fi
	[ "$status" = 0 ] && ok "$desc: mirror --strict exits 0" || not_ok "$desc: mirror --strict exits 0 (got $status)"
	v=$(field elapsed_ms "$line")
	echo "# $desc: mirror ran ${v:-?} ms (asked for $duration s)"
	v=$(field source "$line")
	[ "$v" = kmod ] && ok "$desc: source is kmod" || not_ok "$desc: source is kmod (got '$v')"
	v=$(field stale "$line")
	[ "$v" = 0 ] && ok "$desc: zero stale entries" || not_ok "$desc: zero stale entries (got '$v')"
	v=$(field releases "$line")
	[ "$v" = 0 ] && ok "$desc: never released or evicted" ||
		not_ok "$desc: never released or evicted (releases=$v)"
	v=$(field checks "$line")
	[ "${v:-0}" -ge $min_checks ] && ok "$desc: $v checks (>= $min_checks)" ||
		not_ok "$desc: at least $min_checks checks (got '$v')"
	v=$(field invalidations "$line")
	[ "${v:-0}" -ge $min_invalidations ] && ok "$desc: $v invalidations (>= $min_invalidations)" ||
		not_ok "$desc: at least $min_invalidations invalidations (got '$v')"
	v=$(field dropped "$line")
	[ "${v:-0}" -gt 0 ] && ok "$desc: invalidations dropped $v mirrored entries" ||
		not_ok "$desc: invalidations dropped mirrored entries (got '$v')"
	# An entry seen over a hole (munmap removed the VMA, its invalidation
	# had not started yet) is judged later; each must then be dropped by
	# its invalidation: at most one workload op (16 pages) may still be
	# pending when the run stops.
	local holes dropped
	holes=$(field holes "$line") dropped=$(field holes_dropped "$line")
	[ -n "$holes" ] && [ -n "$dropped" ] && [ $((holes - dropped)) -le 16 ] &&
		ok "$desc: $dropped of $holes entries seen over a munmap hole were then invalidated" ||
		not_ok "$desc: entries seen over a munmap hole were then invalidated (holes=$holes dropped=$dropped)"
	v=$(field migrated "$line")
	[ "${v:-0}" -ge $min_migrated ] && ok "$desc: $v pages migrated between nodes (>= $min_migrated)" ||
		not_ok "$desc: at least $min_migrated pages migrated between nodes (got '$v')"
	echo "# $desc: figures: $line"
}

# --- mmnd with the kmod source; readiness through a FIFO, never a sleep ---
if mmnd_run_start "$tmp" 60 "$mmnd" --source=kmod; then
	ok "mmnd --source=kmod is ready"
else
	not_ok "mmnd --source=kmod is ready"
	sed 's/^/# mmnd: /' "$tmp/mmnd.log"
	finish
fi

nb_default=$(cat /proc/sys/kernel/numa_balancing)
numa_balancing() {
	echo "$1" >/proc/sys/kernel/numa_balancing && [ "$(cat /proc/sys/kernel/numa_balancing)" = "$1" ]
}
# self DESC [MIRROR_ARGS...]: mirror's own workload.
self() {
	local out="$tmp/$1.out" status v
	"$mirror" --socket "$tmp/mmnd.sock" --check --strict --migrate --verbose --duration "$duration" \
		"${@:2}" >"$out" 2>&1
	status=$?
	judge "$1" "$out" $status
	v=$(field ops "$(grep '^mirror: source=' "$out")")
	[ "${v:-0}" -gt 0 ] && ok "$1: the workload did $v operations" ||
		not_ok "$1: the workload did operations (got '$v')"
}

# --- 1: mirror's own workload, NUMA balancing off, with 10,000 more subscriptions in place ---
# (a registration cache's page-sized ones of another mapping of the same
# process: mmnd looks every invalidation up among them in that target's
# index).
numa_balancing 0 && ok "NUMA balancing off" || not_ok "NUMA balancing off"
self "self" --extra-subs 10000
v=$(field extra_subs "$(grep '^mirror: source=' "$tmp/self.out")")
[ "$v" = 10000 ] && ok "self: 10000 more subscriptions were in place" ||
	not_ok "self: 10000 more subscriptions were in place (got '$v')"
numa_balancing 1 && ok "NUMA balancing on" || not_ok "NUMA balancing on"

# --- 2: another process, by --pid, NUMA balancing on ---
mkfifo "$tmp/work" || bail "mkfifo failed"
"$mirror" --workload-only --migrate --seed 3 --duration $((duration + 30)) >"$tmp/work" 2>&1 &
work_pid=$!
exec 4<"$tmp/work"
# The workload prints "arena ADDR:LEN" before it starts; the read waits for it.
if read -r -t 60 word arena <&4 && [ "$word" = arena ]; then
	ok "workload pid $work_pid prints its arena $arena"
else
	not_ok "workload prints its arena (got '${word:-} ${arena:-}')"
	finish
fi
cat <&4 >"$tmp/work.out" &
cat_pid=$!
"$mirror" --socket "$tmp/mmnd.sock" --pid "$work_pid" --range "$arena" --check --strict --migrate --verbose \
	--duration "$duration" >"$tmp/pid.out" 2>&1
judge "pid" "$tmp/pid.out" $?
kill "$work_pid"
wait "$work_pid"
work_status=$? work_pid=
wait "$cat_pid"
exec 4<&-
sed 's/^/# /' "$tmp/work.out"
# SIGTERM ends the workload early: it is expected to die of it (143).
v=$(sed -n 's/^workload: ops=\([0-9]*\).*/\1/p' "$tmp/work.out")
if [ -n "$v" ]; then
	[ "$v" -gt 0 ] && ok "pid: the workload did $v operations" || not_ok "pid: the workload did operations"
else
	[ "$work_status" = 143 ] && ok "pid: the workload ran until stopped (status $work_status)" ||
		not_ok "pid: the workload ran until stopped (status $work_status)"
fi

# --- 3: mirror's own workload, NUMA balancing on ---
self "self-numa-balancing"
numa_balancing "$nb_default" || not_ok "NUMA balancing restored to $nb_default"

# --- mmnd stops cleanly ---
kill -TERM "$mmnd_pid"
wait "$mmnd_pid"
status=$? mmnd_pid=
[ $status = 0 ] && ok "mmnd exits 0 on SIGTERM" || not_ok "mmnd exits 0 on SIGTERM (got $status)"
grep -E '^<[0-4]>' "$tmp/mmnd.log" | sed 's/^/# mmnd: /'
finish
