#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian packages installed as a user would, in a guest booted with
# systemd, on whatever kernel the guest runs (never a hard-coded version):
# mmn-dkms (DKMS builds mmn.ko for `uname -r`), mmnd, libmmn1, libmmn-dev
# and the adapters' packages; modprobe mmn; mmnd.socket enabled and
# listening; hello.c (libmmn-dev's example, built with pkg-config in the
# guest) receives an invalidation from mmnd's kmod source; `mmnctl status`;
# then `dpkg --purge` of them all leaves none of their files, no module,
# no DKMS state and no unit behind.  The guest's / is an overlay on the
# host's root, so nothing reaches the host.  TAP, one line per step.
#
# On the host (meson runs this):
#   test-install.sh SOURCE_ROOT DEBIAN_BUILD OUT_DIR GUEST_RUNNER [RUN_GUEST_OPTION...]
# takes the packages from tests/lib/debian-build (the debian-package test's
# build of the same tree when there is one, or builds them), copies them
# into a scratch directory and runs itself in the guest:
#   test-install.sh --guest DEB_DIR
set -u

if [ "${1:-}" != --guest ]; then
	src=$1 debian_build=$2 out=$3 runner=$4
	shift 4
	for tool in dpkg-buildpackage dkms; do
		if ! command -v $tool >/dev/null; then
			echo "1..0 # SKIP $tool is not installed (scripts/setup installs it)"
			exit 0
		fi
	done
	debs=$(mktemp -d /tmp/mmn-debinst-XXXXXX)
	trap 'rm -rf "$debs"' EXIT
	res=$(COPY_TO=$debs "$debian_build" "$src" "$out")
	if [ $? -ne 0 ]; then
		echo "not ok 1 - the Debian packages of the source tree"
		echo "$res" | grep '^#'
		echo "1..1"
		exit 1
	fi
	how=$(echo "$res" | grep -v '^#' | head -n1)
	"$runner" "$@" --env "MMN_DEB_HOW=$how" -- "$(realpath "$0")" --guest "$debs"
	exit $?
fi

debs=$2
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
# A step's output, in the results share: the host sees it as it grows.
log=${MMN_GUEST_RESULTS:-/tmp}/step.log
check() { # DESCRIPTION COMMAND...
	local desc=$1 t0=$SECONDS
	shift
	if "$@" >"$log" 2>&1; then
		ok "$desc ($((SECONDS - t0)) s)"
	else
		not_ok "$desc ($((SECONDS - t0)) s)"
		tail -40 "$log" | sed 's/^/# /'
	fi
}
finish() {
	echo "1..$n"
	exit $failed
}
start=$SECONDS
krel=$(uname -r)
echo "# guest kernel $krel"

# Every binary package but the debug symbols, by the name in its control file.
pkgs=() files=()
for d in "$debs"/*.deb; do
	p=$(dpkg-deb -f "$d" Package)
	case $p in *-dbgsym) continue ;; esac
	pkgs+=("$p")
	files+=("$d")
done
if [ ${#pkgs[@]} -ge 4 ]; then
	ok "packages (${MMN_DEB_HOW:-?}): ${pkgs[*]}"
else
	not_ok "packages: ${pkgs[*]}"
	finish
fi
if [ ! -f "/lib/modules/$krel/build/Makefile" ]; then
	not_ok "the headers of $krel are installed (DKMS needs them)"
	finish
fi

# --- install: DKMS builds the module for this kernel in mmn-dkms's postinst ---
# dkms's postinst builds for the running kernel and for the newest one whose
# /boot/config-* it finds; only the running kernel is under test, and under
# TCG each build takes minutes: the others' configs leave the guest's
# (overlay) /boot.
for c in /boot/config-*; do
	[ "$c" = "/boot/config-$krel" ] || rm -f "$c"
done
# A host that is a container image forbids maintainer scripts to start or
# stop services (policy-rc.d exits 101); a booted system has no such policy,
# and the packages' start of mmnd.socket and stop of mmnd are under test.
rm -f /usr/sbin/policy-rc.d
# man-db's trigger re-indexes every manual page: minutes under TCG, and not
# under test; its switch is this file (debconf's man-db/auto-update).
rm -f /var/lib/man-db/auto-update
# dpkg -i, not apt-get install ./*.deb: the guest is offline and every
# dependency is installed on the host already, and apt's reading of the
# archive's package lists takes a minute under TCG.
check "dpkg -i ${pkgs[*]}" env DEBIAN_FRONTEND=noninteractive dpkg -i "${files[@]}"
[ $failed -eq 0 ] || finish
grep -E '^(Building for|Building initial module|Installing|Done|Error)' "$log" | sed 's/^/# dkms: /'
check "dkms status: mmn installed for $krel" sh -c "dkms status -m mmn -k $krel | grep -q ': installed'"
ko=$(ls "/lib/modules/$krel/updates/dkms/"mmn.ko* 2>/dev/null | head -n1)
check "DKMS put mmn.ko into /lib/modules/$krel/updates/dkms ($(basename "${ko:-none}"))" test -n "$ko"
check "modprobe mmn loads that module" sh -c \
	"modprobe mmn && test -d /sys/module/mmn && modinfo -n mmn | grep -q '^/lib/modules/$krel/updates/dkms/'"

# --- mmnd: its socket, a client, the kmod source ---
check "systemd-sysusers (postinst) created group mmn" getent group mmn
check "mmnd.socket enabled and started by the postinst" sh -c \
	'systemctl is-enabled mmnd.socket && systemctl is-active mmnd.socket'
check "systemctl enable --now mmnd.socket" systemctl enable --now mmnd.socket
check "mmnd.socket is enabled and listening on /run/mmn/mmnd.sock" sh -c \
	'systemctl is-enabled mmnd.socket && systemctl is-active mmnd.socket && test -S /run/mmn/mmnd.sock'
hello=/tmp/hello
check "hello.c built with \`pkg-config --cflags --libs mmn\` from libmmn-dev" sh -c \
	"cc -Wall -Wextra -Werror -o $hello /usr/share/doc/libmmn-dev/examples/hello.c \$(pkg-config --cflags --libs mmn)"
check "hello receives an invalidation (socket activation starts mmnd)" \
	timeout 60 "$hello"
sed 's/^/# hello: /' "$log"
check "mmnctl status: mmnd runs the kmod source" sh -c \
	"mmnctl status && mmnctl --json=short status | grep -q '\"source\":\"kmod\"'"
sed 's/^/# mmnctl: /' "$log" | head -20
check "mmnd.service is active, started by its socket" systemctl is-active mmnd.service

# --- purge: nothing of the packages is left ---
# Every file (not directory) the packages installed, from dpkg's lists; -d
# follows symbolic links, so that /lib (merged /usr) counts as a directory.
for p in "${pkgs[@]}"; do
	dpkg -L "$p"
done | sort -u | while read -r f; do
	[ -d "$f" ] || echo "$f"
done >/tmp/installed.list
echo "# the packages installed $(wc -l </tmp/installed.list) files"
check "dpkg --purge ${pkgs[*]}" env DEBIAN_FRONTEND=noninteractive dpkg --purge "${pkgs[@]}"
check "dpkg knows none of them any more (no config-files state)" sh -c \
	"! dpkg-query -W -f '\${Package} \${db:Status-Abbrev}\n' ${pkgs[*]} 2>/dev/null | grep -v ' un *\$' | grep ."
left=$(while read -r f; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done </tmp/installed.list)
if [ -z "$left" ]; then ok "none of the $(wc -l </tmp/installed.list) files is left"
else not_ok "none of the packages' files is left"; echo "$left" | sed 's/^/# left: /'; fi
left=$(ls -d /usr/src/mmn-* /var/lib/dkms/mmn /lib/modules/*/updates/dkms/mmn.ko* \
	/etc/systemd/system/*.wants/mmnd.* /etc/systemd/system/mmnd.* /lib/systemd/system/mmnd.* \
	/usr/lib/modules-load.d/mmn.conf /usr/lib/sysusers.d/mmn.conf /run/mmn/mmnd.sock 2>/dev/null)
if [ -z "$left" ]; then
	ok "no module source, DKMS state, module, unit, enablement link or socket is left"
else
	not_ok "no module source, DKMS state, module, unit, enablement link or socket is left"
	echo "$left" | sed 's/^/# left: /'
fi
check "the units are gone and mmnd was stopped" sh -c \
	'! systemctl is-active mmnd.service && ! systemctl cat mmnd.socket'
# rmmod: modprobe -r would look the module up in the modules.dep the purge
# rewrote without it.
check "mmn.ko unloads: mmnd no longer holds it" rmmod mmn
# The group stays: a system group may own files the packages did not make.
getent group mmn >/dev/null && echo "# group mmn stays (sysusers.d groups are never removed)"
echo "# total $((SECONDS - start)) s in the guest"
finish
