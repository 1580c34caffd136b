#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# checkpatch.pl --strict-free run over the module sources, with the
# checkpatch of the kernel mmn.ko is built for.  checkpatch is not vendored
# and not in Debian's headers packages: it is taken from linux-source-X.Y
# (X.Y: the series of KREL) when installed.  LINUX_VERSION_CODE is allowed:
# the rule is for code merged into one kernel, and this module is built out
# of tree for several, following their API changes with version guards.
# usage: check-checkpatch.sh SRCDIR KREL
set -eu
src=$1 krel=$2
series=$(echo "$krel" | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p')
tarball=/usr/src/linux-source-$series.tar.xz
if [ ! -f "$tarball" ]; then
	echo "1..0 # SKIP linux-source-$series not installed (no checkpatch.pl)"
	exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
top=$(tar -tJf "$tarball" 2>/dev/null | head -n1 | cut -d/ -f1)
tar -xJf "$tarball" -C "$work" "$top/scripts/checkpatch.pl" \
	"$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
echo "checkpatch: $tarball"
cd "$src"
perl "$work/$top/scripts/checkpatch.pl" --no-tree --terse --show-types \
	--ignore LINUX_VERSION_CODE -f \
	*.c *.h include/uapi/linux/mmn.h
