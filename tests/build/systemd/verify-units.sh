#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Install into a DESTDIR and check what systemd and D-Bus will read there:
# systemd-analyze verify on every unit (ExecStart= resolved inside the
# DESTDIR), the systemd-analyze security exposure, the D-Bus policy and
# activation file, sysusers.d; modules-load.d and the DKMS source only when
# the build installs the module's source (-Ddkms=true).  TAP.
#
#   verify-units.sh MESON BUILD_ROOT PREFIX UNITDIR SYSUSERSDIR MODULESLOADDIR DBUSPOLICYDIR DBUSSERVICEDIR DKMS_DIR
#
# DKMS_DIR: /usr/src/mmn-VERSION with -Ddkms=true, else empty.
set -u
meson=$1 build=$2 prefix=$3 unitdir=$4 sysusersdir=$5 modulesloaddir=$6 policydir=$7 servicedir=$8 dkms=$9
max_exposure=25 # systemd-analyze security --threshold: 2.5

if ! command -v systemd-analyze >/dev/null; then
	# meson (1.0) counts a TAP test exiting 77 as an error: exit 0.
	echo "1..0 # SKIP systemd-analyze is not installed"
	exit 0
fi

dest=$(mktemp -d /tmp/mmn-units-XXXXXX)
trap 'rm -rf "$dest"' EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
# check DESCRIPTION COMMAND...: its output goes to the log when it fails.
check() {
	desc=$1
	shift
	if "$@" >"$dest.out" 2>&1; then
		ok "$desc"
	else
		not_ok "$desc"
		sed 's/^/# /' "$dest.out"
	fi
	rm -f "$dest.out"
}

check "meson install into a DESTDIR" "$meson" install -C "$build" --no-rebuild --destdir "$dest" --quiet \
	--tags runtime,man,systemd,dkms
for f in "$unitdir/mmnd.service" "$unitdir/mmnd.socket" "$policydir/org.mmn.Broker1.conf" \
	"$servicedir/org.mmn.Broker1.service" "$sysusersdir/mmn.conf" \
	"$prefix/sbin/mmnd" "$prefix/bin/mmnctl" "$prefix/share/man/man1/mmnctl.1" \
	"$prefix/share/man/man8/mmnd.8" "$prefix/share/man/man5/org.mmn.Broker1.5" \
	"$prefix/share/bash-completion/completions/mmnctl" "$prefix/share/zsh/vendor-completions/_mmnctl"; do
	if [ -e "$dest$f" ]; then ok "installed $f"; else not_ok "installed $f"; fi
done

# The units the DESTDIR's units refer to (sockets.target, sysinit.target...)
# come from the host; ours are not overwritten.
mkdir -p "$dest$unitdir"
for d in /lib/systemd/system /usr/lib/systemd/system; do
	[ -d "$d" ] && cp -rn "$d/." "$dest$unitdir/" 2>/dev/null
done
check "systemd-analyze verify mmnd.service mmnd.socket (ExecStart in the DESTDIR, man pages from it)" \
	env MANPATH="$dest$prefix/share/man" systemd-analyze verify --root="$dest" \
	"$unitdir/mmnd.service" "$unitdir/mmnd.socket"

systemd-analyze security --offline=yes --root="$dest" --no-pager "$unitdir/mmnd.service" >"$dest.sec" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for mmnd.service: \([0-9.]*\).*/\1/p' "$dest.sec")
sed -n '/^✗/s/^/# /p' "$dest.sec"
rm -f "$dest.sec"
echo "# systemd-analyze security mmnd.service: exposure $exposure"
if [ -n "$exposure" ] && [ "$(echo "$exposure" | tr -d .)" -le "$max_exposure" ]; then
	ok "exposure $exposure <= 2.5"
else
	not_ok "exposure '$exposure' <= 2.5"
fi

unit=$dest$unitdir/mmnd.service
for want in Type=notify BusName=org.mmn.Broker1 WatchdogSec= Restart=on-failure \
	"ExecStart=$prefix/sbin/mmnd --bus=system" NoNewPrivileges=yes ProtectSystem=strict \
	"RestrictAddressFamilies=AF_UNIX AF_NETLINK" SystemCallFilter=@system-service \
	"CapabilityBoundingSet=CAP_NET_ADMIN CAP_SYS_ADMIN CAP_IPC_LOCK"; do
	if grep -q "^$want" "$unit"; then ok "mmnd.service has $want"; else not_ok "mmnd.service has $want"; fi
done
sock=$dest$unitdir/mmnd.socket
for want in ListenSequentialPacket=/run/mmn/mmnd.sock SocketMode=0660 SocketGroup=mmn; do
	if grep -q "^$want\$" "$sock"; then ok "mmnd.socket has $want"; else not_ok "mmnd.socket has $want"; fi
done

check "the D-Bus policy is well-formed and names org.mmn.Broker1" python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "busconfig"
owners = [a.get("own") for p in root.findall("policy") if p.get("user") == "root" for a in p.findall("allow")]
assert "org.mmn.Broker1" in owners, owners
' "$dest$policydir/org.mmn.Broker1.conf"
act=$dest$servicedir/org.mmn.Broker1.service
if grep -qx "Name=org.mmn.Broker1" "$act" && grep -qx "Exec=/bin/false" "$act" &&
	grep -qx "SystemdService=mmnd.service" "$act"; then
	ok "the activation file hands org.mmn.Broker1 to mmnd.service"
else
	not_ok "the activation file hands org.mmn.Broker1 to mmnd.service"
fi

if command -v systemd-sysusers >/dev/null; then
	check "systemd-sysusers --root creates group mmn" sh -c \
		'mkdir -p "$1/etc" && systemd-sysusers --root="$1" && grep "^mmn:" "$1/etc/group"' -- "$dest"
fi
if [ -n "$dkms" ]; then
	if grep -qx mmn "$dest$modulesloaddir/mmn.conf"; then ok "modules-load.d loads mmn"; else not_ok "modules-load.d loads mmn"; fi
	for f in dkms.conf Kbuild main.c include/uapi/linux/mmn.h; do
		if [ -f "$dest$dkms/$f" ]; then ok "installed $dkms/$f"; else not_ok "installed $dkms/$f"; fi
	done
	check "dkms.conf names the version of $dkms" grep -qx "PACKAGE_VERSION=\"${dkms##*/mmn-}\"" "$dest$dkms/dkms.conf"
elif [ -e "$dest$modulesloaddir/mmn.conf" ] || [ -e "$dest/usr/src" ]; then
	not_ok "without -Ddkms=true neither modules-load.d/mmn.conf nor the module source is installed"
else
	ok "without -Ddkms=true neither modules-load.d/mmn.conf nor the module source is installed"
fi
check "mmnctl --help runs from the DESTDIR" "$dest$prefix/bin/mmnctl" --help

echo "1..$n"
exit $failed
