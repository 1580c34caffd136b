#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Build mmn.ko afresh with W=1 and the given make arguments (C=2: sparse on
# every file), fail on any compiler or sparse report, then check what
# modinfo says of the module: its version, its kernel, and whether it has
# the test knob (fail_event_alloc: only with MMN_TEST_KNOBS=y).  TAP.
# usage: check-kbuild.sh KBUILD_SH SRCDIR KDIR KREL VERSION [make args...]
set -u
kbuild=$1 src=$2 kdir=$3 krel=$4 version=$5
shift 5
knobs=n
for a in "$@"; do
	[ "$a" = MMN_TEST_KNOBS=y ] && knobs=y
done
case " $* " in
*" C=2 "*) command -v sparse >/dev/null ||
	{ echo "1..0 # SKIP sparse not installed"; exit 0; } ;;
esac

work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT

echo 1..5
"$kbuild" "$src" "$work/src" "$kdir" "$work/mmn.ko" W=1 "$@" 2>"$work/log"
rc=$?
# make -s prints only reports; kbuild.sh drops its BTF note and make's noise
grep -v -e '^ *CHECK' -e '^ *CC' -e '^ *LD' -e '^ *MODPOST' -e '^ *BTF' \
	"$work/log" >"$work/warn"
if [ $rc -eq 0 ]; then echo "ok 1 - mmn.ko builds for $krel ($*)"; else echo "not ok 1 - mmn.ko builds for $krel ($*)"; fi
if [ -s "$work/warn" ]; then
	echo "not ok 2 - no warnings with W=1 $*"
	sed 's/^/# /' "$work/warn"
else
	echo "ok 2 - no warnings with W=1 $*"
fi
[ $rc -eq 0 ] || { echo "Bail out! no module to check"; exit 1; }

got=$(modinfo -F version "$work/mmn.ko")
if [ "$got" = "$version" ]; then echo "ok 3 - MODULE_VERSION $got"; else echo "not ok 3 - MODULE_VERSION '$got', expected '$version'"; fi
got=$(modinfo -F vermagic "$work/mmn.ko" | cut -d' ' -f1)
if [ "$got" = "$krel" ]; then echo "ok 4 - vermagic $got"; else echo "not ok 4 - vermagic '$got', expected '$krel'"; fi
has=n
modinfo -F parm "$work/mmn.ko" | grep -q '^fail_event_alloc:' && has=y
if [ $has = $knobs ]; then
	echo "ok 5 - test knob fail_event_alloc: $has (MMN_TEST_KNOBS=$knobs)"
else
	echo "not ok 5 - test knob fail_event_alloc: $has, but MMN_TEST_KNOBS=$knobs"
fi
