/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bounded unsigned options: the one parser and range check behind mmnd's
 * command line (main.c), the broker's option check (broker.c) and the
 * D-Bus setters (dbus.c).  Header-only because dbus.c is also built in
 * front of a scripted broker in the tests, without the broker's files.
 */
#ifndef MMN_DAEMON_OPTIONS_H
#define MMN_DAEMON_OPTIONS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* 0 when min <= @v <= max, else -ERANGE. */
static inline int mmn__option_check_u32(uint64_t v, uint32_t min, uint32_t max)
{
	return v < min || v > max ? -ERANGE : 0;
}

/*
 * Parse @s, plain decimal digits (no sign, blank or suffix), into *@out
 * when it lies in [min, max].  -EINVAL when it is not a number, -ERANGE
 * when it is out of range (huge values included); *@out is then unchanged.
 */
static inline int mmn__option_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || mmn__option_check_u32(v, min, max) < 0)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

#endif
