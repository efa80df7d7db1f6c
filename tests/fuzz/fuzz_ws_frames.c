/*
 * fuzz_ws_frames.c - arbitrary server bytes after a good 101: the frame
 * parser (tn_ws_parse) must never read or write out of bounds, whatever the
 * lengths, opcodes, masks and read boundaries.
 *
 * Input: byte 0 picks the size of each read the parser is handed (TLS
 * records arrive in any split); the rest is the byte stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_stubs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tn_engine eng;
	struct tn_relay r;
	unsigned char *copy;
	size_t step, off = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	/* the parser unmasks in place, so it gets a writable copy */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fuzz_setup(&eng, &r);
	while (off < size) {
		size_t n = size - off < step ? size - off : step;

		if (tn_ws_parse(&r, copy + off, n) || r.peer_closed)
			break;
		off += n;
	}
	if (fuzz_sink.len > size)
		__builtin_trap();	/* delivered more payload than was received */
	free(copy);
	return 0;
}
