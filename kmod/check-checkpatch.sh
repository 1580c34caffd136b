#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# checkpatch.pl --strict-free run over the module sources.  checkpatch is not
# vendored: it is taken from Debian's linux-source-6.1 when installed.
# usage: check-checkpatch.sh SRCDIR
set -eu
src=$1
tarball=$(ls /usr/src/linux-source-6.1*.tar.xz 2>/dev/null | tail -n1 || true)
if [ -z "$tarball" ]; then
	echo "1..0 # SKIP linux-source-6.1 not installed (no checkpatch.pl)"
	exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
top=$(tar -tJf "$tarball" 2>/dev/null | head -n1 | cut -d/ -f1)
tar -xJf "$tarball" -C "$work" "$top/scripts/checkpatch.pl" \
	"$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
cd "$src"
perl "$work/$top/scripts/checkpatch.pl" --no-tree --terse --show-types -f \
	*.c *.h include/uapi/linux/mmn.h
