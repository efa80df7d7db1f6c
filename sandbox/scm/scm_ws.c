/*
 * scm_ws.c - RFC 6455 server-side framing (see scm_ws.h).
 *
 * The payload is unmasked sixteen bytes at a time while it is copied to the
 * relay's buffer: the tunnel's upload is this loop, so it must cost no more
 * than the copy.
 */
#include "scm_ws.h"

#include <string.h>

#include <openssl/evp.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Sixteen bytes per step: GCC and Clang turn this into one SIMD XOR. */
typedef unsigned char ws_block __attribute__((vector_size(16)));

static void
ws_unmask_copy(unsigned char *out, const unsigned char *in, size_t n,
	       const unsigned char mask[4], unsigned *pos)
{
	unsigned char m[16];
	ws_block mb, w;
	size_t i = 0, k;

	for (k = 0; k < 16; k++)
		m[k] = mask[(*pos + k) & 3];
	memcpy(&mb, m, 16);
	for (; i + 16 <= n; i += 16) {
		memcpy(&w, in + i, 16);
		w ^= mb;
		memcpy(out + i, &w, 16);
	}
	for (; i < n; i++)
		out[i] = in[i] ^ m[i & 15];
	*pos = (unsigned)((*pos + n) & 3);
}

static int
ws_is_control(unsigned opcode)
{
	return opcode & 0x8;
}

/* Header bytes needed so far, given the first two (0: not known yet). */
static size_t
ws_head_size(const unsigned char *h, size_t have)
{
	size_t n = 2;

	if (have < 2)
		return 0;
	if ((h[1] & 0x7f) == 126)
		n += 2;
	else if ((h[1] & 0x7f) == 127)
		n += 8;
	return n + 4;	/* client frames are masked */
}

static enum ws_rx_event
ws_head_done(struct ws_rx *rx)
{
	const unsigned char *h = rx->head;
	unsigned len7 = h[1] & 0x7f;
	size_t off = 2, k;
	uint64_t len = len7;

	rx->opcode = h[0] & 0x0f;
	if (h[0] & 0x70) {
		rx->error = "reserved bits set";
		return WS_RX_ERROR;
	}
	if (!(h[1] & 0x80)) {
		rx->error = "unmasked frame from the client";
		return WS_RX_ERROR;
	}
	switch (rx->opcode) {
	case WS_OP_CONT: case WS_OP_TEXT: case WS_OP_BINARY:
	case WS_OP_CLOSE: case WS_OP_PING: case WS_OP_PONG:
		break;
	default:
		rx->error = "reserved opcode";
		return WS_RX_ERROR;
	}
	if (len7 == 126) {
		len = (uint64_t)h[2] << 8 | h[3];
		off = 4;
	} else if (len7 == 127) {
		for (len = 0, k = 0; k < 8; k++)
			len = len << 8 | h[2 + k];
		off = 10;
		if (len >> 63) {
			rx->error = "frame length out of range";
			return WS_RX_ERROR;
		}
	}
	if (ws_is_control(rx->opcode) &&
	    (!(h[0] & 0x80) || len > WS_CONTROL_MAX)) {
		rx->error = "fragmented or oversized control frame";
		return WS_RX_ERROR;
	}
	memcpy(rx->mask, h + off, 4);
	rx->mask_pos = 0;
	rx->left = len;
	rx->control_len = 0;
	rx->in_payload = 1;
	return WS_RX_MORE;
}

enum ws_rx_event
ws_rx_step(struct ws_rx *rx, const unsigned char *in, size_t len,
	   size_t *used, unsigned char *out, size_t out_room, size_t *out_len)
{
	size_t n, want;
	enum ws_rx_event ev;

	*used = 0;
	*out_len = 0;
	for (;;) {
		if (!rx->in_payload) {
			/* the first two bytes say how long the rest is */
			while ((want = ws_head_size(rx->head, rx->head_len) ?
					ws_head_size(rx->head, rx->head_len) :
					2) > rx->head_len) {
				if (*used == len)
					return WS_RX_MORE;
				n = want - rx->head_len;
				if (n > len - *used)
					n = len - *used;
				memcpy(rx->head + rx->head_len, in + *used, n);
				rx->head_len += n;
				*used += n;
			}
			rx->head_len = 0;
			ev = ws_head_done(rx);
			if (ev != WS_RX_MORE)
				return ev;
		}
		if (ws_is_control(rx->opcode)) {
			n = (size_t)rx->left;
			if (n > len - *used)
				n = len - *used;
			ws_unmask_copy(rx->control + rx->control_len,
				       in + *used, n, rx->mask, &rx->mask_pos);
			rx->control_len += n;
			rx->left -= n;
			*used += n;
			if (rx->left)
				return WS_RX_MORE;
			rx->in_payload = 0;
			return rx->opcode == WS_OP_PING ? WS_RX_PING :
			       rx->opcode == WS_OP_PONG ? WS_RX_PONG :
							  WS_RX_CLOSE;
		}
		n = len - *used;
		if (n > rx->left)
			n = (size_t)rx->left;
		if (n > out_room)
			n = out_room;
		if (n) {
			ws_unmask_copy(out, in + *used, n, rx->mask,
				       &rx->mask_pos);
			rx->left -= n;
			*used += n;
			*out_len = n;
		}
		if (!rx->left)
			rx->in_payload = 0;
		if (n)
			return WS_RX_DATA;
		if (*used == len || rx->in_payload)
			return WS_RX_MORE;
	}
}

size_t
ws_header(unsigned char *h, unsigned opcode, uint64_t len)
{
	size_t k;

	h[0] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (k = 0; k < 8; k++)
		h[2 + k] = (unsigned char)(len >> (56 - 8 * k));
	return 10;
}

int
ws_accept_key(const char *key, char out[29])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	if (!md)
		return -1;
	ok = EVP_DigestInit_ex(md, EVP_sha1(), NULL) &&
	     EVP_DigestUpdate(md, key, strlen(key)) &&
	     EVP_DigestUpdate(md, WS_GUID, sizeof(WS_GUID) - 1) &&
	     EVP_DigestFinal_ex(md, digest, &dlen) && dlen == 20;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, digest, 20) == 28 ? 0 : -1;
}
