/*
 * tn_link_test.c - the WebSocket writer's rule, one writer and one pending
 * buffer (run by tests/test_trust_native.py), on the real tn_link.c,
 * tn_ws.c and tn_ring.c; the link's two seams below it are replaced: the
 * TLS adapter (tn_tls.h) by a model of OpenSSL on a socket, the loop
 * (tn_loop.h) by a record of the handler, which the test calls itself.
 *
 * The model keeps what OpenSSL promises a non-blocking writer: a record it
 * could not send whole is kept inside, and the next SSL_write must offer
 * the same bytes again (at least as many). Anything else is what corrupts
 * the stream on a real connection - stray bytes, or a refused write - so
 * the model counts it. A socket this exact cannot be arranged over real
 * TCP: the pong has to meet a send buffer that the flush before it filled
 * to the byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_link.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d %s\n", __FILE__, __LINE__, #c); \
			   return 1; } } while (0)

#define REC_MAX 16384	/* one TLS record of plaintext */

static struct {
	unsigned char *sink;	/* what the server received, in order */
	size_t len, cap;
	size_t room;		/* bytes the socket takes before it is full */
	unsigned char pend[REC_MAX];	/* the record OpenSSL holds after WANT_WRITE */
	size_t pend_len;
	int violations;
} w;

static void sink_add(const unsigned char *p, size_t n)
{
	if (w.len + n > w.cap) {
		w.cap = (w.len + n) * 2;
		w.sink = realloc(w.sink, w.cap);
		if (!w.sink)
			abort();
	}
	memcpy(w.sink + w.len, p, n);
	w.len += n;
}

enum tn_io tn_tls_write(struct tn_tls *t, const unsigned char *p, size_t n, size_t *put,
			struct tn_err *err)
{
	size_t rec = n < REC_MAX ? n : REC_MAX;

	(void)t;
	(void)err;
	*put = 0;
	if (w.pend_len) {
		/* a retry: OpenSSL finishes its record from its own copy */
		if (n < w.pend_len || memcmp(p, w.pend, w.pend_len))
			w.violations++;
		if (w.room < w.pend_len)
			return TN_IO_WANT_WRITE;
		sink_add(w.pend, w.pend_len);
		w.room -= w.pend_len;
		*put = w.pend_len;
		w.pend_len = 0;
		return TN_IO_DONE;
	}
	if (w.room < rec) {
		memcpy(w.pend, p, rec);
		w.pend_len = rec;
		return TN_IO_WANT_WRITE;
	}
	sink_add(p, rec);
	w.room -= rec;
	*put = rec;
	return TN_IO_DONE;
}

/* What the server sends, read in one go. */
static struct {
	unsigned char buf[256];
	size_t len;
} srv;

enum tn_io tn_tls_read(struct tn_tls *t, unsigned char *buf, size_t cap, size_t *got,
		       struct tn_err *err)
{
	(void)t;
	(void)err;
	*got = srv.len < cap ? srv.len : cap;
	if (!*got)
		return TN_IO_WANT_READ;
	memcpy(buf, srv.buf, *got);
	memmove(srv.buf, srv.buf + *got, srv.len - *got);
	srv.len -= *got;
	return TN_IO_DONE;
}

int tn_tls_pending(const struct tn_tls *t) { (void)t; return 0; }
int tn_tls_start(struct tn_tls *t, struct ssl_ctx_st *ctx, int fd, const char *host, int port, int bundle,
		 struct tn_err *err)
{ (void)t; (void)ctx; (void)fd; (void)host; (void)port; (void)bundle; return TN_FAIL(err, TN_R_INTERNAL, .detail = "model"); }
enum tn_io tn_tls_handshake(struct tn_tls *t, struct tn_err *err) { (void)t; (void)err; return TN_IO_ERROR; }
void tn_tls_free(struct tn_tls *t) { (void)t; }

/* The connect: at once, on a descriptor nobody reads. */
void tn_conn_init(struct tn_conn *c, const struct tn_config *cfg) { memset(c, 0, sizeof(*c)); c->cfg = cfg; }
int tn_conn_start(struct tn_conn *c, int *fd, struct tn_err *err) { (void)c; (void)err; *fd = 1000; return 0; }
int tn_conn_finish(struct tn_conn *c, int *fd, struct tn_err *err) { (void)c; (void)fd; (void)err; return 1; }
int tn_conn_proxy_send(struct tn_conn *c, int fd, struct tn_err *err) { (void)c; (void)fd; (void)err; return -1; }
int tn_conn_proxy_rx(struct tn_conn *c, int fd, struct tn_err *err) { (void)c; (void)fd; (void)err; return -1; }
void tn_conn_free(struct tn_conn *c) { (void)c; }

/* The loop: the link's handler is kept, and called by the test. */
static struct {
	tn_loop_fn fn;
	void *ctx;
} loop;

struct tn_watch *tn_loop_adopt(struct tn_loop *lp, int fd, enum tn_watch_kind kind,
			       tn_loop_fn fn, void *ctx)
{
	(void)lp; (void)fd; (void)kind;
	loop.fn = fn;
	loop.ctx = ctx;
	return (struct tn_watch *)&loop;	/* never dereferenced */
}
int tn_loop_replace(struct tn_watch *wt, int fd) { (void)wt; (void)fd; return -1; }
void tn_loop_want_write(struct tn_watch *wt) { (void)wt; }
void tn_loop_pause(struct tn_watch *wt, int paused) { (void)wt; (void)paused; }
void tn_loop_timer(struct tn_watch *wt, int64_t usecs) { (void)wt; (void)usecs; }
void tn_loop_deadline(struct tn_watch *wt, int secs) { (void)wt; (void)secs; }
void tn_loop_kill(struct tn_watch *wt) { (void)wt; }
int64_t tn_loop_now_us(void) { return 0; }

/* The owner: nothing is expected of it here. */
static unsigned data_calls;
static void own_opened(void *ctx) { (void)ctx; }
static int own_data(void *ctx, const struct iovec *runs, int n) { (void)ctx; (void)runs; (void)n; data_calls++; return 0; }
static void own_drained(void *ctx) { (void)ctx; }
static void own_closed(void *ctx) { (void)ctx; }
static const struct tn_link_ops ops = { own_opened, own_data, own_drained, own_closed };

/* One masked client frame at sink[*off]: its opcode and unmasked payload. */
static int next_frame(size_t *off, int *op, unsigned char *out, size_t cap, size_t *n)
{
	const unsigned char *f = w.sink + *off;
	size_t left = w.len - *off, h = 2, i;
	uint64_t len;

	if (left < 2 || !(f[1] & 0x80) || (f[0] & 0x70) || !(f[0] & 0x80))
		return -1;
	len = f[1] & 0x7f;
	if (len == 126) {
		len = (uint64_t)f[2] << 8 | f[3];
		h = 4;
	} else if (len == 127) {
		if (left < 10)
			return -1;
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | f[2 + i];
		h = 10;
	}
	if (left < h + 4 + len || len > cap)
		return -1;
	for (i = 0; i < len; i++)
		out[i] = f[h + 4 + i] ^ f[h + (i & 3)];
	*op = f[0] & 0x0f;
	*n = (size_t)len;
	*off += h + 4 + len;
	return 0;
}

static int writeable(void)
{
	return loop.fn(loop.ctx, TN_LOOP_WRITE, NULL, 0);
}

static int readable(void)
{
	return loop.fn(loop.ctx, TN_LOOP_READ, NULL, 0);
}

int main(void)
{
	static const unsigned char ping[] = "are you there?";
	static unsigned char data[100000], got[TN_FRAME_MAX];
	static struct tn_config cfg;
	static struct tn_link_env env;
	static struct tn_link l;
	atomic_uint_fast64_t up = 0;
	size_t off = 0, n, i, sent = 0;
	int op;

	cfg.host = "link.test";
	env.cfg = &cfg;
	env.txbuf = malloc(TN_WS_HDR_MAX + TN_FRAME_MAX);
	env.rxbuf = malloc(TN_TLS_READ);
	env.bytes_up = &up;
	env.ping_secs = 30;
	env.hangup_secs = 330;
	CHECK(env.txbuf && env.rxbuf);
	CHECK(tn_link_open(&l, &env, &ops, NULL) == 0 && loop.fn);
	l.phase = TN_PH_OPEN;	/* as after the 101 */
	l.opened = 1;
	for (i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);

	/* a busy upload: the first frame only partly fits the socket */
	w.room = 20000;
	CHECK(tn_link_send(&l, data, sizeof(data)) == (ssize_t)sizeof(data));
	CHECK(writeable() == 0);
	CHECK(l.tx_pend && w.pend_len);

	/* the server sends a Ping, then a Close */
	srv.buf[srv.len++] = 0x80 | TN_WS_OP_PING;
	srv.buf[srv.len++] = sizeof(ping) - 1;
	memcpy(srv.buf + srv.len, ping, sizeof(ping) - 1);
	srv.len += sizeof(ping) - 1;
	srv.buf[srv.len++] = 0x80 | TN_WS_OP_CLOSE;
	srv.buf[srv.len++] = 2;
	srv.buf[srv.len++] = 0x03;
	srv.buf[srv.len++] = 0xe8;
	CHECK(readable() == 0);
	CHECK(l.pong_due && l.peer_closed && !data_calls);

	/* room for exactly what is pending: the pong meets a full socket */
	w.room = l.tx_len - l.tx_off;
	CHECK(writeable() == 0);
	CHECK(w.violations == 0);

	/* the socket drains: everything goes, the link is done after the close */
	w.room = 1 << 20;
	CHECK(writeable() == -1);
	CHECK(w.violations == 0);
	CHECK(!l.tx_pend && !w.pend_len);

	/* what the server got: the data frame(s), the pong, the close, nothing else */
	for (;;) {
		CHECK(next_frame(&off, &op, got, sizeof(got), &n) == 0);
		if (op != TN_WS_OP_BINARY)
			break;
		CHECK(sent + n <= sizeof(data) && !memcmp(got, data + sent, n));
		sent += n;
	}
	CHECK(sent > 0);
	CHECK(op == TN_WS_OP_PONG && n == sizeof(ping) - 1 && !memcmp(got, ping, n));
	CHECK(next_frame(&off, &op, got, sizeof(got), &n) == 0);
	CHECK(op == TN_WS_OP_CLOSE && n == 2 && got[0] == 0x03 && got[1] == 0xe8);
	CHECK(off == w.len);

	tn_link_free(&l);
	free(env.txbuf);
	free(env.rxbuf);
	free(w.sink);
	printf("link ok: %zu data bytes, pong, close; %zu bytes on the wire\n", sent, w.len);
	return 0;
}
