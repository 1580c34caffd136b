/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Kernel knobs in tests: write a value to a /sys, /proc or cgroup file. */
#ifndef MMN_TESTS_KNOB_H
#define MMN_TESTS_KNOB_H

/* Writes @s to the existing file @path in one write(); 0, -errno or -EIO (short write). */
int knob_write(const char *path, const char *s);

#endif
