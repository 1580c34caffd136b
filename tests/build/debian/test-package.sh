#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The Debian packages, built as a user would: a copy of the source tree (the
# files git tracks or would track, as they are in the work tree), then
# `dpkg-buildpackage -us -uc -b` in it and lintian on the .changes, which
# must report no error.  Then what each package ships (modules-load.d only
# in mmn-dkms), libmmn1's symbols against the library, examples/hello.c
# built from libmmn-dev with `pkg-config --cflags --libs mmn` alone, and
# mmn-dkms's source built by dkms against KERNEL_BUILD.  TAP.
#
#   test-package.sh SOURCE_ROOT [KERNEL_BUILD]
#
# KERNEL_BUILD: a kernel headers directory (/lib/modules/KREL/build); empty
# skips the DKMS build.
set -u
src=$1 kdir=${2:-}
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

tmp=$(mktemp -d /tmp/mmn-deb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

# --- a clean copy: no build directories, no earlier package build ---
mkdir "$tmp/mmn"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
		tar --null -T - -cf -) | tar -C "$tmp/mmn" -xf -
else
	tar -C "$src" --exclude='./build*' --exclude='./obj-*' --exclude=./debian/tmp \
		--exclude=./debian/.debhelper -cf - . | tar -C "$tmp/mmn" -xf -
fi
if [ -f "$tmp/mmn/debian/control" ]; then ok "copied the source tree ($(du -sh "$tmp/mmn" | cut -f1))"
else not_ok "copied the source tree"; finish; fi

if out=$(cd "$tmp/mmn" && dpkg-checkbuilddeps 2>&1); then
	ok "build dependencies installed"
else
	not_ok "build dependencies installed"
	echo "$out" | sed 's/^/# /'
	finish
fi

# --- dpkg-buildpackage ---
t0=$SECONDS
if (cd "$tmp/mmn" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1; then
	ok "dpkg-buildpackage -us -uc -b ($((SECONDS - t0)) s)"
else
	not_ok "dpkg-buildpackage -us -uc -b"
	tail -60 "$tmp/build.log" | sed 's/^/# /'
	finish
fi
grep -E '^dpkg-(gensymbols|shlibdeps): (warning|error)' "$tmp/build.log" | sed 's/^/# /'

version=$(cd "$tmp/mmn" && dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
echo "# packages:"
for deb in "$tmp"/*.deb; do
	echo "#   $(basename "$deb")  $(stat -c %s "$deb") bytes, installed $(dpkg-deb -f "$deb" Installed-Size) KiB"
done
deb() { echo "$tmp/${1}_${version}_$2.deb"; }
for p in mmnd:$arch libmmn1:$arch libmmn-dev:$arch mmn-dkms:all; do
	if [ -f "$(deb "${p%%:*}" "${p#*:}")" ]; then ok "built ${p%%:*}"; else not_ok "built ${p%%:*}"; fi
done
[ $failed -eq 0 ] || finish

# --- lintian: no error ---
changes=$tmp/mmn_${version}_$arch.changes
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
for p in mmnd libmmn1 libmmn-dev mmn-dkms; do
	d=$(deb $p $arch)
	[ $p = mmn-dkms ] && d=$(deb $p all)
	dpkg-deb -c "$d" | awk '{ print $6 }' | sed 's|^\./|/|' >"$tmp/$p.list"
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
kver=${version%%-*}
has mmn-dkms /usr/lib/modules-load.d/mmn.conf "/usr/src/mmn-$kver/dkms.conf" "/usr/src/mmn-$kver/Kbuild" \
	"/usr/src/mmn-$kver/include/uapi/linux/mmn.h"
others=$(cat "$tmp/mmnd.list" "$tmp/libmmn1.list" "$tmp/libmmn-dev.list" | grep -E 'modules-load|/usr/src/')
if [ -z "$others" ]; then ok "modules-load.d/mmn.conf and the module source only in mmn-dkms"
else not_ok "modules-load.d/mmn.conf and the module source only in mmn-dkms"; echo "$others" | sed 's/^/# /'; fi
if dpkg-deb -f "$(deb mmnd $arch)" Depends | grep -q 'libmmn1\|libuv1' &&
	dpkg-deb -f "$(deb mmn-dkms all)" Depends | grep -q dkms; then
	ok "mmnd depends on its libraries, mmn-dkms on dkms"
else
	not_ok "mmnd depends on its libraries, mmn-dkms on dkms"
fi

# --- libmmn1's symbols file is the library's exact symbol list ---
root=$tmp/root
for p in libmmn1 libmmn-dev mmn-dkms; do
	d=$(deb $p $arch)
	[ $p = mmn-dkms ] && d=$(deb $p all)
	dpkg-deb -x "$d" "$root"
done
mkdir "$tmp/ctl" && dpkg-deb -e "$(deb libmmn1 $arch)" "$tmp/ctl"
lib=$root/usr/lib/$multiarch/libmmn.so.1
# name@@NODE, and each version node NODE itself (type A), as NODE@NODE.
nm -D --defined-only "$lib" | awk '$2 == "A" { print $3 "@" $3; next } { sub(/@@/, "@", $3); print $3 }' |
	sort >"$tmp/lib.syms"
awk '/^ / { print $1 }' "$tmp/ctl/symbols" | sort >"$tmp/deb.syms"
if [ -s "$tmp/lib.syms" ] && diff -u "$tmp/deb.syms" "$tmp/lib.syms" >"$tmp/syms.diff"; then
	ok "DEBIAN/symbols lists exactly the $(wc -l <"$tmp/lib.syms") versioned symbols of libmmn.so.1"
else
	not_ok "DEBIAN/symbols lists exactly the versioned symbols of libmmn.so.1"
	sed 's/^/# /' "$tmp/syms.diff"
fi
nodes=$(sed -n 's/^\(MMN_[0-9.]*\) {.*/\1/p' "$src/client-lib/libmmn.sym" | sort)
inlib=$(grep -o '@MMN_[0-9.]*$' "$tmp/lib.syms" | tr -d @ | sort -u)
if [ -n "$nodes" ] && [ "$nodes" = "$inlib" ]; then
	ok "every version node of libmmn.sym is in the symbols: $(echo $nodes)"
else
	not_ok "every version node of libmmn.sym is in the symbols" "(libmmn.sym: $(echo $nodes); library: $(echo $inlib))"
fi

# --- a client built with pkg-config alone, against the unpacked packages ---
pc() { PKG_CONFIG_LIBDIR="$root/usr/lib/$multiarch/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root" \
	pkg-config "$@"; }
if flags=$(pc --cflags --libs mmn 2>&1) &&
	out=$(cc -Wall -Wextra -Werror -o "$tmp/hello" "$root/usr/share/doc/libmmn-dev/examples/hello.c" \
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
	echo "$flags ${out:-}" | sed 's/^/# /'
fi

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
