/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kmod source's channel to mmn.ko: socket, requests, datagrams (kmod-channel.c). */
#ifndef MMN_DAEMON_SOURCE_KMOD_CHANNEL_H
#define MMN_DAEMON_SOURCE_KMOD_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/netlink.h>

#include <uv.h>

struct kmod_source;

struct nl_msg;

/* Monotonic milliseconds. */
uint64_t mmn__kmod_now_ms(void);
/* libnl's NLE_* codes to a negative errno. */
int mmn__kmod_nlerr(int e);

/* A request of command @cmd to the family, or NULL (no memory). */
struct nl_msg *mmn__kmod_req_new(struct kmod_source *ks, uint8_t cmd);
/* Send without waiting; an error answer comes back later and is counted. */
int mmn__kmod_req_send(struct kmod_source *ks, struct nl_msg *msg);
/* Send the prebuilt ACK of event @seq. */
int mmn__kmod_send_ack(struct kmod_source *ks, uint64_t seq);
/* Send @cmd about ksub @id, with MMN_A_SUB_FLAGS @flags unless negative. */
int mmn__kmod_send_sub_cmd(struct kmod_source *ks, uint8_t cmd, uint32_t id, int flags);
/* Remember the module's extack message of an error answer in ks->extack. */
void mmn__kmod_take_extack(struct kmod_source *ks, const struct nlmsghdr *nlh);

/*
 * Receive one datagram from the kernel into @buf.  Returns its length, 0 when
 * nothing is queued, -ENOBUFS when events were lost, another negative errno
 * when the socket failed.
 */
ssize_t mmn__kmod_recv_one(struct kmod_source *ks, unsigned char *buf);
/* Whether @seq is an abandoned SUBSCRIBE's; @drop forgets it. */
bool mmn__kmod_is_orphan(struct kmod_source *ks, uint32_t seq, bool drop);
/*
 * Send @msg asking for the kernel's acknowledgement and wait, bounded, for
 * the answer; keep everything else that arrives for later.  *@sub_id, if
 * given, receives the SUB_ID of the reply and *@born its rx number.
 */
int mmn__kmod_transact(struct kmod_source *ks, struct nl_msg *msg, uint32_t *sub_id, uint64_t *born);
/* Whether the family is no longer the registered one (asks nlctrl). */
bool mmn__kmod_family_gone(struct kmod_source *ks);

/* Socket options; a failure of the optional ones is not fatal. */
int mmn__kmod_setup_socket(struct kmod_source *ks);
/* Build the ACK message patched in place by mmn__kmod_send_ack(). */
int mmn__kmod_build_ack(struct kmod_source *ks);

#endif
