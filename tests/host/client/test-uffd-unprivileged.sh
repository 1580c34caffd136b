#!/bin/bash
# An unprivileged process (uid nobody, no capabilities) connects to mmnd's
# userfaultfd source and receives its own invalidations: the library must go
# on without UFFD_FEATURE_EVENT_FORK, which needs CAP_SYS_PTRACE.
# usage: test-uffd-unprivileged.sh MMND WATCH
set -u
. "$(dirname "$0")/../../lib/mmnd-run.sh"
mmnd=$1 watch=$2
echo "1..3"
if [ "$(id -u)" -ne 0 ]; then
	echo "ok 1 # SKIP needs root to drop to nobody"; echo "ok 2 # SKIP"; echo "ok 3 # SKIP"; exit 0
fi
d=$(mktemp -d)
mmnd_pid=
trap '[ -n "$mmnd_pid" ] && kill "$mmnd_pid" 2>/dev/null; wait "$mmnd_pid" 2>/dev/null; rm -rf "$d"' EXIT
chmod 755 "$d"
if mmnd_run_start "$d" 20 "$mmnd" --source=uffd; then
	echo "ok 1 - mmnd ready"
else
	echo "not ok 1 - mmnd ready ($mmnd_ready_line)"; cat "$d/mmnd.log"; exit 1
fi
chmod 666 "$d/mmnd.sock"
out=$(MMN_SOCKET="$d/mmnd.sock" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$watch" 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
if [ $rc -eq 0 ]; then echo "ok 2 - watch as nobody exits 0"; else echo "not ok 2 - watch as nobody exits $rc"; fi
if echo "$out" | grep -q '^OK: 3 of 3 changes reported'; then echo "ok 3 - all three changes reported"; else echo "not ok 3 - all three changes reported"; fi
