/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kernel log (/dev/kmsg) in tests: what it got since a point, does it hold a message? */
#ifndef MMN_TESTS_KLOG_H
#define MMN_TESTS_KLOG_H

#include <stdbool.h>

/* /dev/kmsg (O_NONBLOCK, O_CLOEXEC) positioned at its end: the descriptor, or -errno. */
int klog_open(void);

/*
 * Reads the records of @fd from its position to the end, each printed as a
 * "# klog: " TAP comment, and tells how many there were.
 */
int klog_new(int fd);

/*
 * Reads the records of @fd (an O_NONBLOCK /dev/kmsg descriptor) from its
 * position to the end and tells whether one contains @needle.  Records
 * overwritten before they were read (EPIPE) are skipped.
 */
bool klog_has(int fd, const char *needle);

/* klog_has() until it is true, for at most @ms; false when the time ran out. */
bool klog_wait(int fd, const char *needle, int ms);

#endif
