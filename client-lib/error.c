/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mmn_strerror and the optional log sink.  Silent by default (libevdev
 * style): nothing is ever written to stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "mmn/mmn.h"
#include "util.h"

/* Set once by the host, read on any thread: plain atomic pointer loads. */
static mmn_log_fn g_log_fn;
static void *g_log_userdata;
static int g_log_max;

MMN_EXPORT void mmn_set_log_fn(mmn_log_fn fn, int max_priority, void *userdata)
{
	__atomic_store_n(&g_log_userdata, userdata, __ATOMIC_RELAXED);
	__atomic_store_n(&g_log_max, max_priority, __ATOMIC_RELAXED);
	__atomic_store_n(&g_log_fn, fn, __ATOMIC_RELEASE);
}

void mmn__log(int prio, const char *fmt, ...)
{
	mmn_log_fn fn = __atomic_load_n(&g_log_fn, __ATOMIC_ACQUIRE);
	int saved = errno;
	char buf[256];
	va_list ap;

	if (!fn || prio > __atomic_load_n(&g_log_max, __ATOMIC_RELAXED))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fn(prio, buf, __atomic_load_n(&g_log_userdata, __ATOMIC_RELAXED));
	errno = saved;
}

/* What an errno means when libmmn returns it. */
static const struct {
	int err;
	const char *text;
} mmn_errors[] = {
	{EINVAL, "invalid argument (NULL pointer, length 0, bad flags or event mask, missing invalidate "
		 "callback; uffd source: memory type that cannot be watched)"},
	{EOVERFLOW, "range wraps around or passes the end of the user address space"},
	{E2BIG, "options struct larger than this library knows, with non-zero unknown fields"},
	{ENOMEM, "out of memory, or (uffd source) the range is not fully mapped"},
	{EOPNOTSUPP, "the active event source cannot do this (uffd source: only the calling process's "
		     "own memory can be watched; load mmn.ko to watch other processes)"},
	{EBUSY, "range already registered by another userfaultfd (a second mmn_client in this process "
		"subscribed an overlapping range), or another thread is dispatching"},
	{EALREADY, "already done (subscription already removed, or thread already started)"},
	{ECHILD, "client inherited across fork(): a child must connect on its own"},
	{ENOTCONN, "not connected: the library is reconnecting to mmnd, try again"},
	{EAGAIN, "try again (uffd source: a fork() was in flight)"},
	{ECONNRESET, "connection to mmnd lost; the library reconnects by itself"},
	{ECONNREFUSED, "mmnd is not running (connection refused)"},
	{ENOENT, "mmnd socket not found (is mmnd running? is $MMN_SOCKET right?)"},
	{ETIMEDOUT, "mmnd did not answer in time"},
	{EPROTONOSUPPORT, "mmnd speaks no protocol version this library knows"},
	{EBADMSG, "malformed message from mmnd (connection dropped)"},
	{EPROTO, "protocol violation by mmnd (connection dropped)"},
	{EMSGSIZE, "message too large for the mmn wire"},
	{ESRCH, "no such target process"},
	{EPERM, "not allowed to watch this process"},
	{ENOSPC, "mmnd limit reached (subscriptions or clients)"},
};

MMN_EXPORT const char *mmn_strerror(int err)
{
	const char *s;

	if (err < 0)
		err = -err;
	if (err == 0)
		return "success";
	for (size_t i = 0; i < ARRAY_SIZE(mmn_errors); i++)
		if (mmn_errors[i].err == err)
			return mmn_errors[i].text;
	s = strerrordesc_np(err);
	return s ? s : "unknown error";
}
