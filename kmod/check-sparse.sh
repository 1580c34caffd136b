#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Rebuild mmn.ko with sparse on every file (C=2); fail on any sparse report.
# usage: check-sparse.sh SRCDIR KDIR
set -eu
command -v sparse >/dev/null || { echo "1..0 # SKIP sparse not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/log
"$(dirname "$0")/kbuild.sh" "$1" "$work/src" "$2" - C=2 2>"$log" || { cat "$log"; exit 1; }
grep -v -e '^ *CHECK' -e '^ *CC' -e '^ *LD' -e '^ *MODPOST' -e '^ *BTF' "$log" >"$work/warn" || true
if [ -s "$work/warn" ]; then
	cat "$work/warn"
	echo "sparse: warnings"
	exit 1
fi
# make -s hides the CHECK lines; sparse reports to stderr, which is the log.
echo "sparse: clean"
