/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How the packet-stream targets cut their input: a big-endian 16-bit
 * length, then that many bytes (fewer at the end of the input, at most
 * @max), repeated.  Shared by fuzz-wire-rpc.c and fuzz-client-recv.c so the
 * committed corpora of both keep one format.
 */
#ifndef MMN_FUZZ_INPUT_H
#define MMN_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

/* Takes the next packet off the input (@data, @size); sets *@pkt and returns its length. */
static inline size_t fuzz_next_packet(const uint8_t **data, size_t *size, size_t max, const uint8_t **pkt)
{
	size_t n = *size >= 2 ? (size_t)(*data)[0] << 8 | (*data)[1] : 0;
	size_t hdr = *size >= 2 ? 2 : *size;

	*data += hdr;
	*size -= hdr;
	if (n > *size)
		n = *size;
	if (n > max)
		n = max;
	*pkt = *data;
	*data += n;
	*size -= n;
	return n;
}

#endif
