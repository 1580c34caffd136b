/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Raw packets with a descriptor attached (SCM_RIGHTS), for tests that send bytes, not envelopes. */
#ifndef MMN_TESTS_SCM_H
#define MMN_TESTS_SCM_H

#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/*
 * Sends @n bytes at @p as one packet on @sock, with @fd attached when it is
 * >= 0; never blocks, never raises SIGPIPE.  Returns sendmsg()'s result.
 */
static inline ssize_t scm_send_bytes(int sock, const void *p, size_t n, int fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

#endif
