/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: mmnd's parser of the module's netlink events,
 * mmn__kmod_parse_event().  Input: byte 0 picks the room for subscriptions
 * (0..15), the rest is the generic-netlink payload (genlmsghdr and
 * attributes) behind a netlink header that covers exactly it.  The parser
 * must return a documented status and, on success, report only what fits.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmod-genl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct source_event_sub subs[16];
	struct source_event ev;
	struct nlmsghdr *nlh;
	size_t cap, need = 0;
	int r;

	if (size < 1 || size > 65536)
		return 0;
	cap = data[0] % 16;
	/* Exactly sized, so ASan sees any read past the message. */
	nlh = malloc(NLMSG_HDRLEN + size - 1);
	if (!nlh)
		return 0;
	memset(nlh, 0, NLMSG_HDRLEN);
	nlh->nlmsg_len = (uint32_t)(NLMSG_HDRLEN + size - 1);
	memcpy((uint8_t *)nlh + NLMSG_HDRLEN, data + 1, size - 1);
	r = mmn__kmod_parse_event(nlh, &ev, subs, cap, &need);
	if (r != 0 && r != -EBADMSG && r != -ENOSPC && r != -EOPNOTSUPP)
		abort();
	if ((r == -ENOSPC && need <= cap) || (r == 0 && ev.nsubs > cap))
		abort();
	free(nlh);
	return 0;
}
