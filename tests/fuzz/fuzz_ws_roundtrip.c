/*
 * fuzz_ws_roundtrip.c - frames built by tn_ws_frame (masked, as a client
 * sends them) decode, by the plain reference decoder below, to exactly the
 * payload that went in; re-sent unmasked, as a server would, tn_ws_next
 * delivers that payload again, whatever the message sizes and read
 * boundaries. Checks the word-at-a-time masking and both sides' length
 * encodings against an independent reading of RFC 6455.
 *
 * Input: byte 0 picks the read size, byte 1 the message size unit; the rest
 * is the payload, cut into messages.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tn_config.h"
#include "tn_ws.h"

/* RFC 6455 5.2 read byte by byte: turns one client frame at `in` into the
 * same frame unmasked at `out`; returns the bytes consumed, or 0. */
static size_t ref_unmask(const unsigned char *in, size_t len, unsigned char *out, size_t *out_len)
{
	size_t h = 2, plen, i;
	const unsigned char *key;

	if (len < 2 || !(in[1] & 0x80))
		return 0;
	plen = in[1] & 0x7f;
	if (plen == 126) {
		plen = ((size_t)in[2] << 8) | in[3];
		h = 4;
	} else if (plen == 127) {
		plen = 0;
		for (i = 0; i < 8; i++)
			plen = (plen << 8) | in[2 + i];
		h = 10;
	}
	if (len < h + 4 + plen)
		return 0;
	key = in + h;
	memcpy(out, in, h);
	out[1] &= 0x7f;
	for (i = 0; i < plen; i++)
		out[h + i] = in[h + 4 + i] ^ key[i & 3];
	*out_len = h + plen;
	return h + 4 + plen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tn_ws ws;
	struct tn_ws_msg m;
	struct tn_err err;
	unsigned char *wire = NULL, *frame, *txbuf = NULL, *sink = NULL;
	size_t step, unit, wlen = 0, off, slen = 0;

	if (size < 2)
		return 0;
	step = (size_t)data[0] * 37 % 70000 + 1;
	unit = (size_t)data[1] * 263 % 70000 + 1;	/* crosses the 126 and 65536 encodings */
	data += 2;
	size -= 2;
	tn_ws_init(&ws, "fuzz.invalid", 0);
	txbuf = malloc(TN_WS_HDR_MAX + TN_FRAME_MAX);
	wire = malloc(size + (size / unit + 1) * TN_WS_HDR_MAX + 1);
	sink = malloc(size + 1);
	if (!txbuf || !wire || !sink)
		goto out;
	for (off = 0; off < size;) {
		size_t n = size - off, flen, ulen;

		if (n > unit)
			n = unit;
		if (n > TN_FRAME_MAX)
			n = TN_FRAME_MAX;
		flen = tn_ws_frame(&ws, TN_WS_OP_BINARY, txbuf + TN_WS_HDR_MAX, data + off, n, &frame);
		if (ref_unmask(frame, flen, wire + wlen, &ulen) != flen ||
		    ulen != flen - 4 || memcmp(wire + wlen + ulen - n, data + off, n))
			__builtin_trap();	/* tn_ws_frame built a wrong frame */
		wlen += ulen;
		off += n;
	}
	for (off = 0; off < wlen;) {
		size_t n = wlen - off < step ? wlen - off : step, left = n;
		unsigned char *p = wire + off;
		int ev;

		while ((ev = tn_ws_next(&ws, &p, &left, &m, &err)) > 0) {
			if (ev != TN_WS_DATA || slen + m.n > size)
				__builtin_trap();	/* only our data frames went in */
			memcpy(sink + slen, m.p, m.n);
			slen += m.n;
		}
		if (ev < 0 || left)
			__builtin_trap();	/* our own frames must decode */
		off += n;
	}
	if (slen != size || memcmp(sink, data, size))
		__builtin_trap();
out:
	tn_ws_free(&ws);
	free(txbuf);
	free(wire);
	free(sink);
	return 0;
}
