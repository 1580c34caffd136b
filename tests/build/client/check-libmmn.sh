#!/usr/bin/env bash
# Build checks of libmmn (TAP): exported symbols, soname, the header alone in
# C99 and C++, and a program built only with `pkg-config --cflags --libs mmn`
# against the build tree's uninstalled mmn.pc.
#   check-libmmn.sh BUILD_ROOT LIBMMN_SO HEADER_DIR CC CXX
set -uo pipefail
build=$1 lib=$2 incdir=$3 cc=$4 cxx=$5
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; printf '%s\n' "$@" | sed 's/^/# /'; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. Only mmn_* is exported (plus the version node itself).
syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort)
leaks=$(echo "$syms" | grep -v '^mmn_' || true)
if [ -z "$leaks" ] && [ -n "$syms" ]; then ok "nm -D exports only mmn_* ($(echo "$syms" | wc -l) symbols)"
else nok "nm -D exports only mmn_*" "leaked: $leaks"; fi

# 2. Every function the header declares MMN_EXPORT is exported, versioned
# MMN_1.0, or MMN_1.1 for the batch calls, MMN_1.2 for the slow path of the
# inline readers of MMN_SEQ_ABI 1 (still served), MMN_1.3 for ABI 2's.
declared=$(grep -o 'MMN_EXPORT [^(]*(' "$incdir/mmn/mmn.h" | grep -o 'mmn_[a-z_]*' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$syms"))
if [ -z "$missing" ]; then ok "every MMN_EXPORT function of mmn.h is exported"
else nok "every MMN_EXPORT function of mmn.h is exported" "missing: $missing"; fi
v11='^(mmn_subscribe_many|mmn_unsubscribe_many)@@MMN_1[.]1$'
v12='^mmn_read_begin_slow@@MMN_1[.]2$'
v13='^mmn_read_begin_slow2@@MMN_1[.]3$'
unversioned=$(nm -D --defined-only "$lib" | awk -v v11="$v11" -v v12="$v12" -v v13="$v13" '$2 != "A" && $3 !~ /@@MMN_1[.]0$/ && $3 !~ v11 && $3 !~ v12 && $3 !~ v13')
if [ -z "$unversioned" ]; then ok "all symbols in version node MMN_1.0, the batch calls in MMN_1.1, mmn_read_begin_slow in MMN_1.2, mmn_read_begin_slow2 in MMN_1.3"
else nok "all symbols in version node MMN_1.0, the batch calls in MMN_1.1, mmn_read_begin_slow in MMN_1.2, mmn_read_begin_slow2 in MMN_1.3" "$unversioned"; fi
# Programs inlining the readers of MMN_SEQ_ABI 1 still find their slow path.
in12=$(nm -D --defined-only "$lib" | grep -cE ' mmn_read_begin_slow@@MMN_1[.]2$')
if [ "$in12" = 1 ]; then ok "mmn_read_begin_slow (ABI 1) still exported in MMN_1.2"
else nok "mmn_read_begin_slow (ABI 1) still exported in MMN_1.2" "found $in12 of 1"; fi
in11=$(nm -D --defined-only "$lib" | grep -cE ' (mmn_subscribe_many|mmn_unsubscribe_many)@@MMN_1[.]1$')
if [ "$in11" = 2 ]; then ok "mmn_subscribe_many and mmn_unsubscribe_many in MMN_1.1"
else nok "mmn_subscribe_many and mmn_unsubscribe_many in MMN_1.1" "found $in11 of 2"; fi
# Programs built against an mmn.h without the inline readers still find them.
in10=$(nm -D --defined-only "$lib" | grep -cE ' (mmn_read_begin|mmn_read_retry)@@MMN_1[.]0$')
if [ "$in10" = 2 ]; then ok "mmn_read_begin and mmn_read_retry still exported in MMN_1.0"
else nok "mmn_read_begin and mmn_read_retry still exported in MMN_1.0" "found $in10 of 2"; fi

# 3. soname.
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" = "libmmn.so.1" ]; then ok "soname libmmn.so.1"
else nok "soname libmmn.so.1" "got '$soname'"; fi

# 4. The header on its own: C99 pedantic, C11, C++11/17.
echo '#include <mmn/mmn.h>
int reads(struct mmn_sub *s) { return mmn_read_retry(s, mmn_read_begin(s)); }
int main(void) { struct mmn_sub_opts o = { .size = sizeof(o) }; return (int)o.size == 0; }' >"$tmp/h.c"
for std in c99 c11; do
	if out=$("$cc" -std=$std -pedantic -Wall -Wextra -Werror -I"$incdir" -c "$tmp/h.c" -o "$tmp/h.o" 2>&1); then
		ok "header compiles alone with -std=$std -pedantic -Werror"
	else nok "header compiles alone with -std=$std -pedantic -Werror" "$out"; fi
done
echo '#include <mmn/mmn.h>
int reads(mmn_sub *s) { return mmn_read_retry(s, mmn_read_begin(s)); }
int main() { mmn_range r = mmn_range(); return r.blockable ? 1 : 0; }' >"$tmp/h.cc"
if command -v "$cxx" >/dev/null; then
	for std in c++11 c++17; do
		if out=$("$cxx" -std=$std -pedantic -Wall -Wextra -Werror -I"$incdir" -c "$tmp/h.cc" -o "$tmp/hh.o" 2>&1); then
			ok "header compiles as $std"
		else nok "header compiles as $std" "$out"; fi
	done
else
	ok "# SKIP no C++ compiler"
fi

# 5. A program built only with pkg-config against the uninstalled .pc links and runs.
cat >"$tmp/prog.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <mmn/mmn.h>
int main(void)
{
	struct mmn_client *c;
	int r = mmn_connect("/nonexistent/mmn.sock", &c);

	printf("%s\n", mmn_strerror(r));
	/* The inline readers: NULL is a collision, without a client. */
	return r == -ENOENT && mmn_read_retry(NULL, mmn_read_begin(NULL)) ? 0 : 1;
}
C
export PKG_CONFIG_PATH="$build/meson-uninstalled"
if flags=$(pkg-config --cflags --libs mmn 2>&1) &&
	out=$("$cc" "$tmp/prog.c" -o "$tmp/prog" $flags 2>&1); then
	ok "program built with only \`pkg-config --cflags --libs mmn\` links ($flags)"
	libdir=$(pkg-config --variable=prefix mmn)/client-lib
	preload=
	# A sanitized libmmn needs its runtime first in a non-sanitized program.
	if readelf -d "$lib" | grep -q 'NEEDED.*libasan'; then
		preload=$("$cc" -print-file-name=libasan.so)
	fi
	if out=$(LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 LD_LIBRARY_PATH="$libdir" "$tmp/prog" 2>&1); then
		ok "and runs: $out"
	else nok "and runs" "$out"; fi
	if ldd_out=$(LD_LIBRARY_PATH="$libdir" ldd "$tmp/prog") && grep -q 'libmmn.so.1 ' <<<"$ldd_out"; then
		ok "it needs libmmn.so.1"
	else nok "it needs libmmn.so.1" "$ldd_out"; fi
	if objdump -T "$tmp/prog" | grep -qE '[(]MMN_1[.]3[)] +mmn_read_begin_slow2$'; then
		ok "inlining mmn_read_begin binds it to mmn_read_begin_slow2@MMN_1.3 (the layout's version)"
	else nok "inlining mmn_read_begin binds it to mmn_read_begin_slow2@MMN_1.3" "$(objdump -T "$tmp/prog" | grep mmn_)"; fi
else
	nok "program built with only pkg-config links" "$flags" "${out:-}"
fi
echo "1..$n"
[ "$failed" -eq 0 ]
