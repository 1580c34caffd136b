#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Build mmn.ko out of the source tree: copy the sources into WORKDIR and run
# kbuild there (kbuild writes its objects next to the sources).
# usage: kbuild.sh SRCDIR WORKDIR KDIR OUTPUT.ko [make args...]
set -eu
src=$1 work=$2 kdir=$3 out=$4
shift 4
mkdir -p "$work/include/uapi/linux"
for f in "$src"/Kbuild "$src"/*.c "$src"/*.h; do
	cmp -s "$f" "$work/${f##*/}" || cp "$f" "$work/"
done
cmp -s "$src/include/uapi/linux/mmn.h" "$work/include/uapi/linux/mmn.h" ||
	cp "$src/include/uapi/linux/mmn.h" "$work/include/uapi/linux/"
make -s -C "$kdir" M="$work" "$@" modules 2>&1 |
	grep -v -e 'Skipping BTF generation' -e '^make\[' >&2 || true
# grep ate make's status: the module is the proof
[ -f "$work/mmn.ko" ] || { echo "kbuild.sh: no mmn.ko built" >&2; exit 1; }
[ "$out" = - ] || cp "$work/mmn.ko" "$out"
