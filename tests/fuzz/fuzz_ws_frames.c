/*
 * fuzz_ws_frames.c - arbitrary server bytes after a good 101: the frame
 * decoder (tn_ws_next) must never read or write out of bounds, whatever
 * the lengths, opcodes, masks and read boundaries, and never give out more
 * payload than it was given, nor a control payload longer than 125 bytes.
 *
 * Input: byte 0 picks the size of each read the decoder is handed (TLS
 * records arrive in any split); the rest is the byte stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tn_ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tn_ws ws;
	struct tn_ws_msg m;
	struct tn_err err;
	unsigned char *copy;
	size_t step, off = 0, payload = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	/* the decoder hands out pointers into its input: a heap copy, so ASan
	 * sees any read past the end */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	tn_ws_init(&ws, "fuzz.invalid", 1);
	while (off < size && !ws.closed) {
		size_t n = size - off < step ? size - off : step, left = n;
		unsigned char *p = copy + off;
		int ev;

		while ((ev = tn_ws_next(&ws, &p, &left, &m, &err)) > 0) {
			if (ev == TN_WS_DATA) {
				if (m.p < copy + off || m.p + m.n > copy + off + n)
					__builtin_trap();	/* outside what it was given */
				payload += m.n;
			} else if (m.n > 125) {
				__builtin_trap();	/* control payloads fit */
			}
		}
		if (ev < 0)
			break;
		if (left)
			__builtin_trap();	/* "more" means everything was used */
		off += n;
	}
	if (payload > size)
		__builtin_trap();	/* delivered more payload than was received */
	tn_ws_free(&ws);
	free(copy);
	return 0;
}
