/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Stand-ins for components built by others that are not in the tree yet
 * (daemon/meson.build decides), so mmnd always builds: a missing source
 * reports -EOPNOTSUPP, a missing bus cannot be opened.
 */
#include <errno.h>
#include <stddef.h>

#include "admin.h"
#include "source.h"

#if !MMN_HAVE_SOURCE_KMOD
int mmn__source_kmod_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out)
{
	return -EOPNOTSUPP;
}
#endif

#if !MMN_HAVE_SOURCE_UFFD
int mmn__source_uffd_new(uv_loop_t *loop, source_event_fn emit, void *userdata, struct source **out)
{
	return -EOPNOTSUPP;
}
#endif

#if !MMN_HAVE_DBUS
int mmn__bus_open(uv_loop_t *loop, struct broker *b, enum bus_kind kind, const char *address,
		  struct bus **out)
{
	return -EOPNOTSUPP;
}

void mmn__bus_close(struct bus *bus)
{
}
#endif
