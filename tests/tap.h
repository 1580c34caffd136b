/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A tiny TAP producer for mmn's tests (meson test protocol: 'tap').
 * Checks print both values on failure, libuv style.  A test program calls
 * tap_plan() or ends with tap_done(); its exit status is non-zero when any
 * check failed.  tap_skip_all() prints "1..0 # SKIP reason" and exits 0: meson
 * (1.0) reads that plan as SKIP, and treats exit 77 of a TAP test as an ERROR.
 */
#ifndef MMN_TESTS_TAP_H
#define MMN_TESTS_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 0))) static inline void tap_vok(int cond, const char *fmt, va_list ap)
{
	tap_n++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
}

__attribute__((format(printf, 2, 3))) static inline int tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vok(cond, fmt, ap);
	va_end(ap);
	return cond;
}

static inline void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tap_diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

#define tap_is_int(a, b, name)                                                                     \
	({                                                                                         \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		int _r = tap_ok(_a == _b, "%s", name);                                             \
		if (!_r)                                                                           \
			tap_diag("  %s:%d: %s == %lld, expected %s == %lld", __FILE__, __LINE__, #a, _a, \
				 #b, _b);                                                          \
		_r;                                                                                \
	})

#define tap_is_u64(a, b, name)                                                                     \
	({                                                                                         \
		uint64_t _a = (uint64_t)(a), _b = (uint64_t)(b);                                   \
		int _r = tap_ok(_a == _b, "%s", name);                                             \
		if (!_r)                                                                           \
			tap_diag("  %s:%d: %s == 0x%" PRIx64 ", expected %s == 0x%" PRIx64, __FILE__,    \
				 __LINE__, #a, _a, #b, _b);                                        \
		_r;                                                                                \
	})

#define tap_is_str(a, b, name)                                                                     \
	({                                                                                         \
		const char *_a = (a), *_b = (b);                                                   \
		int _r = tap_ok(_a && _b && strcmp(_a, _b) == 0, "%s", name);                      \
		if (!_r)                                                                           \
			tap_diag("  %s:%d: %s == \"%s\", expected \"%s\"", __FILE__, __LINE__, #a,       \
				 _a ? _a : "(null)", _b ? _b : "(null)");                          \
		_r;                                                                                \
	})

/* Abort the whole test program: the state after this check is meaningless. */
#define tap_require(cond)                                                                          \
	do {                                                                                       \
		if (!tap_ok(!!(cond), "require %s", #cond)) {                                      \
			tap_diag("  %s:%d: bailing out", __FILE__, __LINE__);                      \
			printf("Bail out! %s\n", #cond);                                           \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static inline void tap_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
