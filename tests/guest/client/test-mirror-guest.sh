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
# Run 4 repeats run 1 (NUMA balancing off) in a memory cgroup held over its
# memory.high.  mirror --announce prints "mirror: running" once its setup is
# over, and only then is memory.high set below the cgroup's usage (85% of
# what is left once it could reclaim): set before, it throttled the setup
# itself (10,000 subscriptions) for a minute.  The guest has no swap, so
# the anonymous memory stays and so does the excess: every thread of the
# process that charges memory is throttled on its way back to user space
# (mem_cgroup_handle_over_high: reclaim, then a penalty sleep that grows
# with the square of the excess, up to 2 s).  libmmn's dispatch thread
# charged the socket buffers of the acks it sends (AF_UNIX sendmsg), so it
# sat in that throttling while the kernel waited for its ack, past the 1 s
# deadline of that wait: the process was evicted (releases=1, within
# seconds, in every run on 6.1, until its acks went through the ack ring:
# shared memory and an eventfd, which charge nothing).  The cgroup's
# memory.events "high" counter must grow during the run: a run that was
# never throttled proves nothing and fails.  Its workload only changes
# protections and writes resident pages (--ops mprotect,write), which
# charge little (a VMA split now and then): with mmap/munmap/madvise it
# charged new pages all the time and refilled the cgroup's per-CPU charge
# cache itself, and libmmn's thread, drawing on that cache, was throttled in
# only some runs.  This way the charges that find the cgroup above
# memory.high are mostly the acking thread's, if it makes any.
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
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
bail() { echo "Bail out! $*"; cleanup; exit 1; }
finish() {
	cleanup
	echo "1..$n"
	exit $failed
}

tmp=$(mktemp -d) || bail "mktemp failed"
mmnd_pid= work_pid= memcg_pid= cg=
cleanup() {
	[ -n "$work_pid" ] && kill "$work_pid" 2>/dev/null && wait "$work_pid" 2>/dev/null
	[ -n "$memcg_pid" ] && kill "$memcg_pid" 2>/dev/null && wait "$memcg_pid" 2>/dev/null
	[ -n "$cg" ] && rmdir "$cg" 2>/dev/null
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
# judge_self DESC STATUS: judge's assertions on $tmp/DESC.out, a run of
# mirror's own workload, and that this workload did something.
judge_self() {
	local out="$tmp/$1.out" v
	judge "$1" "$out" "$2"
	v=$(field ops "$(grep '^mirror: source=' "$out")")
	[ "${v:-0}" -gt 0 ] && ok "$1: the workload did $v operations" ||
		not_ok "$1: the workload did operations (got '$v')"
}
# self DESC [MIRROR_ARGS...]: mirror's own workload.
self() {
	"$mirror" --socket "$tmp/mmnd.sock" --check --strict --migrate --verbose --duration "$duration" \
		"${@:2}" >"$tmp/$1.out" 2>&1
	judge_self "$1" $?
}
# extra_subs DESC N: mirror held N more subscriptions during the run DESC.
extra_subs() {
	local v
	v=$(field extra_subs "$(grep '^mirror: source=' "$tmp/$1.out")")
	[ "$v" = "$2" ] && ok "$1: $2 more subscriptions were in place" ||
		not_ok "$1: $2 more subscriptions were in place (got '$v')"
}
# memcg_event NAME: the NAME counter of $cg/memory.events.
memcg_event() { sed -n "s/^$1 //p" "$cg/memory.events"; }
# memcg_self DESC [MIRROR_ARGS...]: mirror's own workload in the cgroup $cg,
# whose memory.high goes just below its usage once mirror is running.
memcg_self() {
	local out="$tmp/$1.out" line= cur high before after status
	rm -f "$tmp/memcg"
	mkfifo "$tmp/memcg" || bail "mkfifo failed"
	# The process joins $cg before it execs mirror: all of it is charged there.
	bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg" \
		"$mirror" --socket "$tmp/mmnd.sock" --check --strict --migrate --verbose --duration "$duration" \
		--announce "${@:2}" >"$tmp/memcg" 2>&1 &
	memcg_pid=$!
	exec 5<"$tmp/memcg"
	# All that mirror prints goes to $out, for judge; the read waits for
	# "mirror: running", or returns at EOF when mirror exits first.
	: >"$out"
	while IFS= read -r -t 120 line <&5; do
		printf '%s\n' "$line" >>"$out"
		[ "$line" = "mirror: running" ] && break
	done
	if [ "$line" = "mirror: running" ]; then
		ok "$1: mirror pid $memcg_pid runs in $cg"
		# Twice: lowering memory.high reclaims at once what it can (page
		# cache, the per-CPU charge caches), and what is left is mostly
		# anonymous memory, which stays without swap.  Below the first
		# reading the usage soon fell back under memory.high.  85% of
		# the second leaves the cgroup about 18% over memory.high, where
		# the penalty for one charge batch is the 2 s maximum, twice the
		# ack deadline; 5% or 10% below it, the penalty was shorter and
		# the dispatch thread missed the deadline in some runs only.
		before=$(memcg_event high) cur=$(cat "$cg/memory.current")
		if echo $((cur * 85 / 100)) >"$cg/memory.high" && cur=$(cat "$cg/memory.current") &&
			high=$((cur * 85 / 100)) && echo "$high" >"$cg/memory.high"; then
			ok "$1: memory.high set to $high (85% of memory.current $cur once reclaimed)"
		else
			not_ok "$1: memory.high set to 85% of memory.current, twice"
		fi
	else
		not_ok "$1: mirror runs in $cg (got '$line')"
		kill "$memcg_pid" 2>/dev/null
	fi
	cat <&5 >>"$out"
	wait "$memcg_pid"
	status=$? memcg_pid=
	exec 5<&-
	after=$(memcg_event high)
	echo "# $1: memory.current $(cat "$cg/memory.current") at the end; memory.events: $(tr '\n' ' ' <"$cg/memory.events")"
	judge_self "$1" $status
	[ -n "$before" ] && [ "${after:-0}" -gt "$before" ] &&
		ok "$1: memory.events high grew from $before to $after: mirror was throttled" ||
		not_ok "$1: memory.events high grew: mirror was throttled (from '$before' to '$after')"
}

# --- 1: mirror's own workload, NUMA balancing off, with 10,000 more subscriptions in place ---
# (a registration cache's page-sized ones of another mapping of the same
# process: mmnd looks every invalidation up among them in that target's
# index).
numa_balancing 0 && ok "NUMA balancing off" || not_ok "NUMA balancing off"
self "self" --extra-subs 10000
extra_subs "self" 10000
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

# --- 4: as run 1, in a memory cgroup held over its memory.high from the moment mirror runs ---
numa_balancing 0 && ok "NUMA balancing off" || not_ok "NUMA balancing off"
[ -e /sys/fs/cgroup/cgroup.controllers ] || mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
if ! grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	skip "self-memcg" "no cgroup v2 memory controller"
elif echo +memory >/sys/fs/cgroup/cgroup.subtree_control && mkdir "/sys/fs/cgroup/mmn-mirror-$$"; then
	cg=/sys/fs/cgroup/mmn-mirror-$$
	memcg_self "self-memcg" --extra-subs 10000 --ops mprotect,write
	extra_subs "self-memcg" 10000
	rmdir "$cg" || not_ok "self-memcg: $cg removed"
	cg=
else
	not_ok "self-memcg: a memory cgroup in /sys/fs/cgroup"
fi
numa_balancing "$nb_default" || not_ok "NUMA balancing restored to $nb_default"

# --- mmnd stops cleanly ---
kill -TERM "$mmnd_pid"
wait "$mmnd_pid"
status=$? mmnd_pid=
[ $status = 0 ] && ok "mmnd exits 0 on SIGTERM" || not_ok "mmnd exits 0 on SIGTERM (got $status)"
grep -E '^<[0-4]>' "$tmp/mmnd.log" | sed 's/^/# mmnd: /'
finish
