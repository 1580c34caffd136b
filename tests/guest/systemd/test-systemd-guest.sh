#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs inside the guest with systemd as PID 1 (run-guest --init systemd):
# installs the built units, D-Bus policy and binaries into the guest's
# (overlay) root, then checks socket activation, readiness, mmnctl over the
# system bus and its policy, restart after SIGSEGV with the client
# resynchronising, and restart when the watchdog ping stops.  TAP.
#
#   test-systemd-guest.sh BUILD_ROOT SOURCE_ROOT TEST_CLIENT SBINDIR BINDIR EXPECTED_SOURCE [EVENT_SOURCE]
#
# SBINDIR, BINDIR: where the build installs mmnd and mmnctl (its --prefix),
# which the built mmnd.service names.
# EXPECTED_SOURCE: what the shipped --source=auto must pick (uffd without
# mmn.ko, kmod with it).  EVENT_SOURCE replaces --source in a drop-in, to
# exercise the unit when no real source can run.
set -u
build=$1 src=$2 client=$3 sbindir=$4 bindir=$5 expect=$6 source=${7:-}
export PATH="$bindir:$PATH"
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
check() { # DESCRIPTION COMMAND...
	local desc=$1
	shift
	if "$@" >/tmp/check.out 2>&1; then ok "$desc"; else not_ok "$desc"; sed 's/^/# /' /tmp/check.out; fi
}
# until DEADLINE_S COMMAND...: poll COMMAND until it succeeds (bounded; a
# state change systemd makes asynchronously has nothing to wait on).
until_ok() {
	local end=$((SECONDS + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
}
prop() { systemctl show -p "$2" --value "$1"; }
finish() {
	echo "1..$n"
	exit $failed
}

# --- install what `meson install` would, into the guest's root ---
install -D -m 755 "$build/daemon/mmnd" "$sbindir/mmnd" &&
	install -D -m 755 "$build/tools/mmnctl" "$bindir/mmnctl" &&
	install -D -m 644 "$build/systemd/mmnd.service" /etc/systemd/system/mmnd.service &&
	install -D -m 644 "$src/systemd/mmnd.socket" /etc/systemd/system/mmnd.socket &&
	install -D -m 644 "$src/systemd/org.mmn.Broker1.conf" /usr/share/dbus-1/system.d/org.mmn.Broker1.conf &&
	install -D -m 644 "$src/systemd/org.mmn.Broker1.service" \
		/usr/share/dbus-1/system-services/org.mmn.Broker1.service &&
	install -D -m 644 "$src/systemd/sysusers.d/mmn.conf" /usr/lib/sysusers.d/mmn.conf
check "installed the units, policy and binaries ($sbindir/mmnd, $bindir/mmnctl)" test -x "$sbindir/mmnd"
check "systemd-sysusers creates group mmn" sh -c 'systemd-sysusers && getent group mmn'
# dbus-daemon applies <policy group=> by the user database, not by a
# process's supplementary groups: make nobody a member before the bus starts.
check "nobody joins group mmn" gpasswd -a nobody mmn
# Short deadlines for the test only; the shipped unit keeps its own.
mkdir -p /run/systemd/system/mmnd.service.d
cat >/run/systemd/system/mmnd.service.d/test.conf <<'EOF'
[Service]
WatchdogSec=4s
TimeoutAbortSec=2s
RestartSec=200ms
EOF
if [ -n "$source" ]; then
	printf '[Service]\nExecStart=\nExecStart=%s/mmnd --bus=system --source=%s\n' "$sbindir" "$source" \
		>/run/systemd/system/mmnd.service.d/source.conf
	echo "# mmnd runs with --source=$source (drop-in)"
fi
systemctl daemon-reload
# It may already run (and cache nobody's groups): reload it either way.
check "the system bus runs, with our policy loaded" sh -c \
	'systemctl start dbus.socket dbus.service && systemctl reload dbus.service'
check "systemctl start mmnd.socket" systemctl start mmnd.socket
check "mmnd.socket is active" test "$(systemctl is-active mmnd.socket)" = active
check "mmnd.service is not started yet" test "$(systemctl is-active mmnd.service)" = inactive
check "/run/mmn/mmnd.sock: socket, mode 0660, group mmn" \
	test "$(stat -c %F:%a:%G /run/mmn/mmnd.sock)" = "socket:660:mmn"

# --- the first client starts mmnd ---
mkfifo /tmp/client.in
start_client() {
	"$client" /run/mmn/mmnd.sock blocking 4 </tmp/client.in >/tmp/client.out 2>/tmp/client.err &
	client_pid=$!
	exec 3>/tmp/client.in
}
client_up() { grep -q '^READY' /tmp/client.out || ! kill -0 "$client_pid" 2>/dev/null; }
start_client
until_ok 120 client_up
if ! grep -q '^READY' /tmp/client.out && grep -q 'did not answer in time' /tmp/client.err &&
	until_ok 120 sh -c '[ "$(systemctl is-active mmnd.service)" = active ]'; then
	# libmmn waits 5 s for HelloReply; a loaded TCG guest can take longer
	# to start mmnd.  The connection did activate it: connect again.
	echo "# the first client timed out while mmnd started; connecting again"
	exec 3>&-
	wait "$client_pid"
	start_client
	until_ok 60 client_up
fi
if grep -q '^READY' /tmp/client.out; then
	ok "a client connected through the socket (mmnd started by activation)"
else
	not_ok "a client connected through the socket"
	sed 's/^/# /' /tmp/client.err
	journalctl -u mmnd.service -u mmnd.socket --no-pager | tail -30 | sed 's/^/# /'
	finish
fi
check "mmnd.service is active, Type=notify (so READY=1 was received)" \
	test "$(systemctl is-active mmnd.service):$(prop mmnd.service Type)" = active:notify
check "mmnd.service was triggered by mmnd.socket" sh -c "systemctl show -p TriggeredBy --value mmnd.service | grep -q mmnd.socket"
check "mmnd got the watchdog" test "$(prop mmnd.service WatchdogUSec)" = 4s

# --- mmnctl over the system bus and its policy ---
check "mmnctl status over the system bus" mmnctl --no-pager status
check "the sandboxed mmnd runs the $expect source" sh -c \
	"mmnctl --json=short status | grep -q '\"source\":\"$expect\"'"
if [ "$expect" = uffd ]; then
	check "mmnctl status says the module is absent" sh -c "mmnctl status | grep -q 'mmn.ko is not loaded'"
fi
check "mmnctl clients lists the client" sh -c "mmnctl --json=short clients | grep -q '\"pid\":$client_pid,'"
gid=$(getent group mmn | cut -d: -f3)
check "nobody outside group mmn: mmnctl clients refused" sh -c \
	'out=$(setpriv --reuid=65534 --regid=65534 --clear-groups mmnctl clients 2>&1); [ $? = 1 ] && echo "$out" | grep -q "permission denied"'
check "nobody in group mmn: mmnctl clients allowed" \
	setpriv --reuid=65534 --regid=65534 --groups="$gid" mmnctl --json=short clients
check "nobody in group mmn: mmnctl evict refused" sh -c \
	"! setpriv --reuid=65534 --regid=65534 --groups=$gid mmnctl evict 1"

# --- SIGSEGV: restarted, the client comes back ---
pid=$(prop mmnd.service MainPID)
kill -SEGV "$pid"
restarted() { [ "$(prop mmnd.service NRestarts)" = "$1" ] && [ "$(systemctl is-active mmnd.service)" = active ]; }
if until_ok 60 restarted 1; then
	ok "after SIGSEGV mmnd was restarted (NRestarts=1, new pid $(prop mmnd.service MainPID), was $pid)"
else
	not_ok "after SIGSEGV mmnd was restarted"
	systemctl status mmnd.service --no-pager | sed 's/^/# /'
fi
if until_ok 60 sh -c "mmnctl --json=short clients | grep -q '\"pid\":$client_pid,'"; then
	ok "the client reconnected and resubscribed"
else
	not_ok "the client reconnected and resubscribed"
	sed 's/^/# /' /tmp/client.out /tmp/client.err
fi
check "the client saw a resync invalidation" grep -q '^INVALIDATE' /tmp/client.out

# --- the watchdog ping stops: restarted ---
pid=$(prop mmnd.service MainPID)
kill -STOP "$pid"
if until_ok 60 restarted 2; then
	ok "a stopped mmnd (no watchdog ping) was restarted"
else
	not_ok "a stopped mmnd (no watchdog ping) was restarted"
	systemctl status mmnd.service --no-pager | sed 's/^/# /'
fi
check "the journal says: watchdog timeout" sh -c "journalctl -u mmnd.service --no-pager | grep -qi 'watchdog timeout'"

echo quit >&3
exec 3>&-
wait "$client_pid"

# --- D-Bus activation: no client left, so only the bus can start mmnd ---
systemctl stop mmnd.service 2>/dev/null
check "mmnd.service stopped" test "$(systemctl is-active mmnd.service)" != active
check "mmnctl status activates mmnd through D-Bus (SystemdService=)" mmnctl --no-pager status
check "mmnd.service is active again" test "$(systemctl is-active mmnd.service)" = active
check "systemctl stop mmnd.service mmnd.socket" systemctl stop mmnd.service mmnd.socket
journalctl -u mmnd.service --no-pager | tail -20 | sed 's/^/# journal: /'
finish
