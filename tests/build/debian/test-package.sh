#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian packages, built as a user would: tests/lib/debian-build copies
# the source tree (the files git tracks or would track, as they are in the
# work tree) and runs `dpkg-buildpackage -us -uc -b` in it, into OUT_DIR,
# where tests/guest/debian takes the packages from.  Then lintian on the
# .changes, which must report no error, what each package ships
# (modules-load.d only in mmn-dkms), each library's symbols file against
# the library, examples/hello.c built from libmmn-dev with
# `pkg-config --cflags --libs mmn` alone (and the adapters' clients with
# mmn-ucx and mmn-libfabric), and mmn-dkms's source built by dkms against
# KERNEL_BUILD.  TAP.
#
#   test-package.sh SOURCE_ROOT DEBIAN_BUILD OUT_DIR [KERNEL_BUILD]
#
# KERNEL_BUILD: a kernel headers directory (/lib/modules/KREL/build); empty
# skips the DKMS build.
set -u
src=$1 debian_build=$2 out=$3 kdir=${4:-}
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - # SKIP $*"; }
finish() {
	echo "1..$n"
	exit $failed
}

for tool in dpkg-buildpackage dpkg-checkbuilddeps lintian; do
	if ! command -v $tool >/dev/null; then
		# meson (1.0) counts a TAP test exiting 77 as an error: exit 0.
		echo "1..0 # SKIP $tool is not installed (scripts/setup installs it)"
		exit 0
	fi
done

start=$SECONDS

if out_deps=$(cd "$src" && dpkg-checkbuilddeps 2>&1); then
	ok "build dependencies installed"
else
	not_ok "build dependencies installed"
	echo "$out_deps" | sed 's/^/# /'
	finish
fi

# --- dpkg-buildpackage, in this run (tests/guest/debian may take its result) ---
t0=$SECONDS
res=$("$debian_build" "$src" "$out" --fresh)
rc=$?
echo "$res" | grep '^#'
how=$(echo "$res" | grep -v '^#' | head -n1)
if [ $rc -eq 0 ]; then
	case $how in
	built*) ok "dpkg-buildpackage -us -uc -b (${how#built } s)" ;;
	*) ok "dpkg-buildpackage -us -uc -b: taken from a build that ended during this test ($how)" ;;
	esac
else
	not_ok "dpkg-buildpackage -us -uc -b"
	echo "$res" | grep '^# ' | tail -60
	finish
fi
grep -E '^dpkg-(gensymbols|shlibdeps): (warning|error)' "$out/build.log" | sed 's/^/# /'
tmp=$(mktemp -d /tmp/mmn-deb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

version=$(cd "$out/mmn" && dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
echo "# packages:"
for deb in "$out"/*.deb; do
	echo "#   $(basename "$deb")  $(stat -c %s "$deb") bytes, installed $(dpkg-deb -f "$deb" Installed-Size) KiB"
done
deb() { echo "$out/${1}_${version}_$2.deb"; }
# PACKAGE:ARCH; the adapters' packages are built whatever meson would find
# (debian/rules enables them).
packages="mmnd:$arch libmmn1:$arch libmmn-dev:$arch mmn-dkms:all libmmn-ucx1:$arch libmmn-ucx-dev:$arch
	libmmn-libfabric1:$arch libmmn-libfabric-dev:$arch"
for p in $packages; do
	if [ -f "$(deb "${p%%:*}" "${p#*:}")" ]; then ok "built ${p%%:*}"; else not_ok "built ${p%%:*}"; fi
done
[ $failed -eq 0 ] || finish

# --- lintian: no error ---
changes=$out/mmn_${version}_$arch.changes
t0=$SECONDS
lintian --info --show-overrides --display-level '>=pedantic' "$changes" >"$tmp/lintian.out" 2>&1
lintian_rc=$?
echo "# lintian ($((SECONDS - t0)) s): $(grep -c '^E: ' "$tmp/lintian.out") errors," \
	"$(grep -c '^W: ' "$tmp/lintian.out") warnings, $(grep -c '^I: ' "$tmp/lintian.out") info," \
	"$(grep -c '^P: ' "$tmp/lintian.out") pedantic, $(grep -c '^O: ' "$tmp/lintian.out") overridden"
grep -E '^[EWIPO]: ' "$tmp/lintian.out" | sed 's/^/# /'
if [ $lintian_rc -le 2 ] && ! grep -q '^E: ' "$tmp/lintian.out"; then
	ok "lintian reports no error"
else
	not_ok "lintian reports no error (exit $lintian_rc)"
	grep -v '^[WIPON]: ' "$tmp/lintian.out" | sed 's/^/# /'
fi

# --- what each package ships ---
for p in $packages; do
	dpkg-deb -c "$(deb "${p%%:*}" "${p#*:}")" | awk '{ print $6 }' | sed 's|^\./|/|' >"$tmp/${p%%:*}.list"
done
has() { # PACKAGE PATH...: every PATH is in PACKAGE
	local p=$1 f missing=
	shift
	for f; do grep -qx "$f" "$tmp/$p.list" || missing="$missing $f"; done
	if [ -z "$missing" ]; then ok "$p ships $*"; else not_ok "$p ships $*"; echo "# missing:$missing"; fi
}
has mmnd /usr/sbin/mmnd /usr/bin/mmnctl /lib/systemd/system/mmnd.service /lib/systemd/system/mmnd.socket \
	/usr/share/dbus-1/system.d/org.mmn.Broker1.conf /usr/share/dbus-1/system-services/org.mmn.Broker1.service \
	/usr/lib/sysusers.d/mmn.conf /usr/share/bash-completion/completions/mmnctl \
	/usr/share/zsh/vendor-completions/_mmnctl /usr/share/man/man8/mmnd.8.gz \
	/usr/share/man/man1/mmnctl.1.gz /usr/share/man/man5/org.mmn.Broker1.5.gz
has libmmn1 "/usr/lib/$multiarch/libmmn.so.1" "/usr/lib/$multiarch/libmmn.so.1.0.0"
has libmmn-dev /usr/include/mmn/mmn.h "/usr/lib/$multiarch/libmmn.so" "/usr/lib/$multiarch/pkgconfig/mmn.pc" \
	/usr/share/man/man3/libmmn.3.gz /usr/share/doc/libmmn-dev/examples/hello.c
has libmmn-ucx1 "/usr/lib/$multiarch/libmmn-ucx.so.1" "/usr/lib/$multiarch/libmmn-ucx.so.1.0.0" \
	/usr/share/man/man7/libmmn-ucx.7.gz
has libmmn-ucx-dev /usr/include/mmn/ucx.h "/usr/lib/$multiarch/libmmn-ucx.so" \
	"/usr/lib/$multiarch/pkgconfig/mmn-ucx.pc"
has libmmn-libfabric1 "/usr/lib/$multiarch/libmmn-libfabric.so.1" "/usr/lib/$multiarch/libmmn-libfabric.so.1.0.0" \
	/usr/share/man/man7/libmmn-libfabric.7.gz
has libmmn-libfabric-dev /usr/include/mmn/libfabric.h "/usr/lib/$multiarch/libmmn-libfabric.so" \
	"/usr/lib/$multiarch/pkgconfig/mmn-libfabric.pc"
kver=${version%%-*}
has mmn-dkms /usr/lib/modules-load.d/mmn.conf "/usr/src/mmn-$kver/dkms.conf" "/usr/src/mmn-$kver/Kbuild" \
	"/usr/src/mmn-$kver/include/uapi/linux/mmn.h"
others=$(for p in $packages; do [ "${p%%:*}" = mmn-dkms ] || cat "$tmp/${p%%:*}.list"; done | grep -E 'modules-load|/usr/src/')
if [ -z "$others" ]; then ok "modules-load.d/mmn.conf and the module source only in mmn-dkms"
else not_ok "modules-load.d/mmn.conf and the module source only in mmn-dkms"; echo "$others" | sed 's/^/# /'; fi
if dpkg-deb -f "$(deb mmnd $arch)" Depends | grep -q 'libmmn1\|libuv1' &&
	dpkg-deb -f "$(deb mmn-dkms all)" Depends | grep -q dkms; then
	ok "mmnd depends on its libraries, mmn-dkms on dkms"
else
	not_ok "mmnd depends on its libraries, mmn-dkms on dkms"
fi

# --- each library's symbols file is the library's exact symbol list ---
root=$tmp/root
for p in $packages; do
	dpkg-deb -x "$(deb "${p%%:*}" "${p#*:}")" "$root"
done
# symbols_exact PACKAGE SONAME VERSION_SCRIPT: DEBIAN/symbols of PACKAGE lists
# exactly the versioned symbols of SONAME, and these use every version node
# of VERSION_SCRIPT.
symbols_exact() {
	local p=$1 so=$2 script=$3 nodes inlib
	mkdir "$tmp/ctl-$p" && dpkg-deb -e "$(deb "$p" "$arch")" "$tmp/ctl-$p"
	# name@@NODE, and each version node NODE itself (type A), as NODE@NODE.
	nm -D --defined-only "$root/usr/lib/$multiarch/$so" |
		awk '$2 == "A" { print $3 "@" $3; next } { sub(/@@/, "@", $3); print $3 }' | sort >"$tmp/$p.lib.syms"
	awk '/^ / { print $1 }' "$tmp/ctl-$p/symbols" | sort >"$tmp/$p.deb.syms"
	if [ -s "$tmp/$p.lib.syms" ] && diff -u "$tmp/$p.deb.syms" "$tmp/$p.lib.syms" >"$tmp/$p.syms.diff"; then
		ok "$p: DEBIAN/symbols lists exactly the $(wc -l <"$tmp/$p.lib.syms") versioned symbols of $so"
	else
		not_ok "$p: DEBIAN/symbols lists exactly the versioned symbols of $so"
		sed 's/^/# /' "$tmp/$p.syms.diff"
	fi
	nodes=$(sed -n 's/^\([A-Z][A-Z0-9_]*_[0-9.]*\) {.*/\1/p' "$script" | sort)
	inlib=$(grep -o '@[A-Z][A-Z0-9_]*_[0-9.]*$' "$tmp/$p.lib.syms" | tr -d @ | sort -u)
	if [ -n "$nodes" ] && [ "$nodes" = "$inlib" ]; then
		ok "$p: every version node of $(basename "$script") is in the symbols: $(echo $nodes)"
	else
		not_ok "$p: every version node of $(basename "$script") is in the symbols" \
			"($(basename "$script"): $(echo $nodes); library: $(echo $inlib))"
	fi
}
symbols_exact libmmn1 libmmn.so.1 "$src/client-lib/libmmn.sym"
symbols_exact libmmn-ucx1 libmmn-ucx.so.1 "$src/adapters/ucx/libmmn-ucx.sym"
symbols_exact libmmn-libfabric1 libmmn-libfabric.so.1 "$src/adapters/libfabric/libmmn-libfabric.sym"
if dpkg-deb -f "$(deb libmmn-libfabric1 $arch)" Depends | grep -q 'libfabric1' &&
	dpkg-deb -f "$(deb libmmn-libfabric1 $arch)" Depends | grep -q 'libmmn1'; then
	ok "libmmn-libfabric1 depends on libfabric1 and libmmn1"
else
	not_ok "libmmn-libfabric1 depends on libfabric1 and libmmn1"
fi

# --- a client built with pkg-config alone, against the unpacked packages ---
pc() { PKG_CONFIG_LIBDIR="$root/usr/lib/$multiarch/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root" \
	pkg-config "$@"; }
if flags=$(pc --cflags --libs mmn 2>&1) &&
	cc_out=$(cc -Wall -Wextra -Werror -o "$tmp/hello" "$root/usr/share/doc/libmmn-dev/examples/hello.c" \
		$flags 2>&1); then
	ok "hello.c built with \`pkg-config --cflags --libs mmn\` ($flags)"
	if readelf -d "$tmp/hello" | grep -q 'NEEDED.*\[libmmn\.so\.1\]' &&
		LD_LIBRARY_PATH="$root/usr/lib/$multiarch" ldd "$tmp/hello" | grep -q "$root.*libmmn\.so\.1"; then
		ok "it needs libmmn.so.1 and finds the packaged one"
	else
		not_ok "it needs libmmn.so.1 and finds the packaged one"
	fi
else
	not_ok "hello.c built with \`pkg-config --cflags --libs mmn\`"
	echo "$flags ${cc_out:-}" | sed 's/^/# /'
fi
# The adapters linked instead of preloaded: each header and .pc (which
# requires mmn.pc) are enough.  -rpath-link: ld looks for the adapter's own
# libmmn.so.1 in the system's directories, not in $root.
# adapter_client PC HEADER CALL
adapter_client() {
	local pc_name=$1 header=$2 call=$3 flags cc_out
	printf '#include <stddef.h>\n#include <%s>\nint main(void) { return %s ? 0 : 0; }\n' "$header" "$call" \
		>"$tmp/$pc_name.c"
	if flags=$(pc --cflags --libs "$pc_name" 2>&1) &&
		cc_out=$(cc -Wall -Wextra -Werror -o "$tmp/$pc_name" "$tmp/$pc_name.c" $flags \
			-Wl,-rpath-link="$root/usr/lib/$multiarch" 2>&1) &&
		readelf -d "$tmp/$pc_name" | grep -q "NEEDED.*\[lib$pc_name\.so\.1\]"; then
		ok "a client of <$header> built with \`pkg-config --cflags --libs $pc_name\` ($flags)"
	else
		not_ok "a client of <$header> built with \`pkg-config --cflags --libs $pc_name\`"
		echo "$flags ${cc_out:-}" | sed 's/^/# /'
	fi
}
adapter_client mmn-ucx mmn/ucx.h 'mmn_ucx_enabled()'
adapter_client mmn-libfabric mmn/libfabric.h 'mmn_libfabric_import(NULL)'

# --- DKMS builds mmn.ko from mmn-dkms's source, with its dkms.conf ---
if [ -z "$kdir" ] || [ ! -f "$kdir/Makefile" ]; then
	skip "dkms build: no kernel headers"
elif ! command -v dkms >/dev/null; then
	skip "dkms build: dkms is not installed"
else
	krel=$(basename "$(dirname "$kdir")")
	t0=$SECONDS
	mkdir "$tmp/dkms"
	if dkms build -m mmn -v "$kver" -k "$krel" --kernelsourcedir "$kdir" \
		--sourcetree "$root/usr/src" --dkmstree "$tmp/dkms" >"$tmp/dkms.log" 2>&1 &&
		ko=$(find "$tmp/dkms/mmn/$kver/$krel" -name 'mmn.ko*' | head -n1) && [ -n "$ko" ]; then
		ok "dkms build -m mmn -v $kver -k $krel ($((SECONDS - t0)) s): $(basename "$ko")"
	else
		not_ok "dkms build -m mmn -v $kver -k $krel"
		tail -30 "$tmp/dkms.log" | sed 's/^/# /'
		find "$tmp/dkms" -name make.log -exec tail -30 {} \; 2>/dev/null | sed 's/^/# make.log: /'
	fi
fi

echo "# total $((SECONDS - start)) s"
finish
