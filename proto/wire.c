/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int mmn__wire_encode(const MmnEnvelope *env, uint8_t *buf, size_t cap)
{
	size_t need;

	if (!env || env->body_case == MMN__V1__ENVELOPE__BODY__NOT_SET)
		return -EINVAL;
	need = mmn__v1__envelope__get_packed_size(env);
	if (need > cap || need > MMN_WIRE_MAX_MSG)
		return -EMSGSIZE;
	return (int)mmn__v1__envelope__pack(env, buf);
}

static int body_known(const MmnEnvelope *env)
{
	switch (env->body_case) {
	case MMN__V1__ENVELOPE__BODY_HELLO:
	case MMN__V1__ENVELOPE__BODY_HELLO_REPLY:
	case MMN__V1__ENVELOPE__BODY_ATTACH_UFFD:
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE:
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_REPLY:
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE:
	case MMN__V1__ENVELOPE__BODY_SHARE:
	case MMN__V1__ENVELOPE__BODY_SHARE_REPLY:
	case MMN__V1__ENVELOPE__BODY_STATUS:
	case MMN__V1__ENVELOPE__BODY_INVALIDATE:
	case MMN__V1__ENVELOPE__BODY_INVALIDATE_END:
	case MMN__V1__ENVELOPE__BODY_ACK:
	case MMN__V1__ENVELOPE__BODY_RELEASE:
	case MMN__V1__ENVELOPE__BODY_REVOKED:
	case MMN__V1__ENVELOPE__BODY_ERROR:
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY:
	case MMN__V1__ENVELOPE__BODY_SUBSCRIBE_MANY_REPLY:
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY:
	case MMN__V1__ENVELOPE__BODY_UNSUBSCRIBE_MANY_REPLY:
	case MMN__V1__ENVELOPE__BODY_EVENT_BATCH:
	case MMN__V1__ENVELOPE__BODY_ACK_MANY:
		return 1;
	default:
		return 0;
	}
}

int mmn__wire_decode(const uint8_t *buf, size_t len, MmnEnvelope **out)
{
	MmnEnvelope *env;

	*out = NULL;
	if (len > MMN_WIRE_MAX_MSG)
		return -EMSGSIZE;
	env = mmn__v1__envelope__unpack(NULL, len, buf);
	if (!env)
		return -EBADMSG;
	if (!body_known(env)) {
		mmn__v1__envelope__free_unpacked(env, NULL);
		return -EPROTO;
	}
	*out = env;
	return 0;
}

void mmn__wire_free(MmnEnvelope *env)
{
	if (env)
		mmn__v1__envelope__free_unpacked(env, NULL);
}

const char *mmn__wire_body_name(const MmnEnvelope *env)
{
	const ProtobufCFieldDescriptor *f;

	if (!env || env->body_case == MMN__V1__ENVELOPE__BODY__NOT_SET)
		return "none";
	f = protobuf_c_message_descriptor_get_field(&mmn__v1__envelope__descriptor, env->body_case);
	return f ? f->name : "unknown";
}

int mmn__wire_send(int sock, const MmnEnvelope *env, const int *fds, size_t nfds, int nonblock)
{
	uint8_t buf[MMN_WIRE_MAX_MSG];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MMN_WIRE_MAX_FDS)];
	} control;
	struct iovec iov;
	struct msghdr msg = { 0 };
	ssize_t n;
	int len;

	if (nfds > MMN_WIRE_MAX_FDS)
		return -EINVAL;
	len = mmn__wire_encode(env, buf, sizeof(buf));
	if (len < 0)
		return len;
	iov.iov_base = buf;
	iov.iov_len = (size_t)len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (nfds) {
		struct cmsghdr *cmsg;

		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == len ? 0 : -EIO;
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * What one received packet of @n bytes (@msg as recvmsg filled it) is: its
 * descriptors (at most @maxfds, more are closed) into @fds, their count in
 * *@nfds, and @n, 0 (EOF: an empty packet) or -EMSGSIZE, as mmn__wire_recv()
 * returns them.
 */
static ssize_t take_packet(struct msghdr *msg, ssize_t n, int *fds, size_t maxfds, size_t *nfds)
{
	struct cmsghdr *cmsg;
	size_t got = 0;

	*nfds = 0;
	if (maxfds > MMN_WIRE_MAX_FDS)
		maxfds = MMN_WIRE_MAX_FDS;
	for (cmsg = CMSG_FIRSTHDR(msg); cmsg; cmsg = CMSG_NXTHDR(msg, cmsg)) {
		size_t k;

		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
			if (got < maxfds)
				fds[got++] = fd;
			else
				close(fd);
		}
		if (k > maxfds)
			msg->msg_flags |= MSG_CTRUNC;
	}
	if (msg->msg_flags & (MSG_TRUNC | MSG_CTRUNC) || (size_t)n > MMN_WIRE_MAX_MSG) {
		close_all(fds, got);
		return -EMSGSIZE;
	}
	if (n == 0) {
		/*
		 * An empty packet reads like the peer's hangup, and callers
		 * treat it so; descriptors riding on it would never be seen:
		 * close them, or each such packet leaks descriptors into us.
		 */
		close_all(fds, got);
		return 0;
	}
	*nfds = got;
	return n;
}

ssize_t mmn__wire_recv(int sock, uint8_t *buf, size_t cap, int *fds, size_t maxfds, size_t *nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MMN_WIRE_MAX_FDS)];
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr msg = { 0 };
	ssize_t n;

	*nfds = 0;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.buf;
	msg.msg_controllen = sizeof(control.buf);
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return take_packet(&msg, n, fds, maxfds, nfds);
}

ssize_t mmn__wire_recv_many(int sock, struct mmn_wire_packet *pkts, size_t n)
{
	struct mmsghdr mm[MMN_WIRE_RECV_MANY];
	struct iovec iov[MMN_WIRE_RECV_MANY];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MMN_WIRE_MAX_FDS)];
	} control[MMN_WIRE_RECV_MANY];
	int got;

	if (n > MMN_WIRE_RECV_MANY)
		n = MMN_WIRE_RECV_MANY;
	memset(mm, 0, n * sizeof(*mm));
	for (size_t i = 0; i < n; i++) {
		iov[i] = (struct iovec){ .iov_base = pkts[i].buf, .iov_len = sizeof(pkts[i].buf) };
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
		mm[i].msg_hdr.msg_control = control[i].buf;
		mm[i].msg_hdr.msg_controllen = sizeof(control[i].buf);
	}
	do
		got = recvmmsg(sock, mm, (unsigned)n, MSG_CMSG_CLOEXEC | MSG_DONTWAIT, NULL);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		return -errno;
	for (int i = 0; i < got; i++)
		pkts[i].len = take_packet(&mm[i].msg_hdr, (ssize_t)mm[i].msg_len, pkts[i].fds, MMN_WIRE_MAX_FDS,
					  &pkts[i].nfds);
	return got;
}
