/*
 * codec_lib.c - the native codec (native/tn_ws.c, native/tn_conn.c and
 * native/tn_err.c, built with this file alone, nothing stubbed) behind a flat interface for
 * ctypes, so that tests/test_codec_vectors.py runs the byte-level vectors
 * of tests/vectors/websocket.json against it as it does against the
 * portable codec. `make codec-lib` builds it as build/codec/libtn_codec.so.
 *
 * Events out of cv_frames_feed are records: one byte of type (0 data,
 * else the control frame's opcode), four bytes of length (big-endian),
 * the payload.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_conn.h"
#include "tn_ws.h"

#define CV_HOST	"scm.example"
#define CV_PROXY	"proxy.example:3128"

struct cv {
	struct tn_ws ws;
	struct tn_config cfg;
	struct tn_conn conn;
	struct tn_err err;
	char kind[32];
};

/* accept: the Sec-WebSocket-Accept the 101 must carry (28 characters) */
struct cv *cv_new(const char *accept, uint64_t seed)
{
	struct cv *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	tn_ws_init(&c->ws, CV_HOST, seed);
	snprintf(c->ws.accept, sizeof(c->ws.accept), "%s", accept);
	c->cfg.host = CV_HOST;
	c->cfg.port = 443;
	c->cfg.proxy = CV_PROXY;
	tn_conn_init(&c->conn, &c->cfg);
	tn_err_clear(&c->err);
	return c;
}

void cv_free(struct cv *c)
{
	if (!c)
		return;
	tn_ws_free(&c->ws);
	tn_conn_free(&c->conn);
	free(c);
}

/* The failure's kind (of _reasons.def), lower case, as the vectors name it */
const char *cv_error_kind(struct cv *c)
{
	const char *code = tn_kind_codes[tn_reason_kinds[c->err.reason]];
	size_t i;

	for (i = 0; code[i] && i + 1 < sizeof(c->kind); i++)
		c->kind[i] = (char)tolower((unsigned char)code[i]);
	c->kind[i] = '\0';
	return c->kind;
}

int cv_error_status(const struct cv *c)
{
	return c->err.status;
}

/* tn_ws_handshake_rx as it is */
long cv_handshake(struct cv *c, const unsigned char *in, size_t len)
{
	return (long)tn_ws_handshake_rx(&c->ws, in, len, &c->err);
}

/* tn_conn_proxy_answer as it is */
int cv_proxy(struct cv *c, const char *in, size_t len)
{
	return tn_conn_proxy_answer(&c->conn, in, len, &c->err);
}

static size_t cv_record(unsigned char *out, int type, const unsigned char *p, size_t n)
{
	out[0] = (unsigned char)type;
	out[1] = (unsigned char)(n >> 24);
	out[2] = (unsigned char)(n >> 16);
	out[3] = (unsigned char)(n >> 8);
	out[4] = (unsigned char)n;
	memcpy(out + 5, p, n);
	return 5 + n;
}

/*
 * Feeds one read to tn_ws_next until it wants more. Records go to out
 * (6 * len + 256 bytes are enough: every event but a control frame begun
 * in an earlier read uses at least its payload and one more byte of this
 * one); *out_len is their length. Returns 0, -1 on a protocol error (cv_error_kind), -2 when the
 * codec broke its own contract (a data run outside the input, "more"
 * with input left over).
 */
int cv_frames_feed(struct cv *c, unsigned char *in, size_t len, unsigned char *out,
		   size_t *out_len)
{
	unsigned char *p = in;
	size_t left = len, o = 0;
	struct tn_ws_msg m;
	int ev;

	while ((ev = tn_ws_next(&c->ws, &p, &left, &m, &c->err)) > 0) {
		if (ev == TN_WS_DATA) {
			if (m.p < in || m.p + m.n > in + len)
				return -2;
			o += cv_record(out + o, 0, m.p, m.n);
		} else {
			int op = ev == TN_WS_PING ? TN_WS_OP_PING :
				 ev == TN_WS_PONG ? TN_WS_OP_PONG : TN_WS_OP_CLOSE;

			if (m.n > 125)
				return -2;
			o += cv_record(out + o, op, m.p, m.n);
		}
	}
	*out_len = o;
	if (ev < 0)
		return -1;
	return left ? -2 : 0;
}

/* Where the frame stream stands: 0 between frames, 1 inside one, 2 after a Close. */
int cv_state(const struct cv *c)
{
	if (c->ws.closed)
		return 2;
	return c->ws.need == 2 && c->ws.hlen == 0 ? 0 : 1;
}

/* One client frame into out (room for TN_WS_HDR_MAX + n): with the mask
 * key given, or (key NULL) the codec's own. Returns its length. */
size_t cv_frame(struct cv *c, int opcode, const unsigned char *key, const unsigned char *src,
		size_t n, unsigned char *out)
{
	unsigned char *buf = malloc(TN_WS_HDR_MAX + n + 1), *frame;
	size_t flen;

	if (!buf)
		return 0;
	if (key)
		flen = tn_ws_frame_key(opcode, buf + TN_WS_HDR_MAX, src, n, key, &frame);
	else
		flen = tn_ws_frame(&c->ws, opcode, buf + TN_WS_HDR_MAX, src, n, &frame);
	memcpy(out, frame, flen);
	free(buf);
	return flen;
}
