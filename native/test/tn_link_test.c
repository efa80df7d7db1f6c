/*
 * tn_link_test.c - the WebSocket writer's rule, one writer and one pending
 * buffer (run by tests/test_trust_native.py), on the real tn_link.c and
 * tn_ws.c with the socket and OpenSSL replaced by a model.
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

#include <openssl/ssl.h>

#include "tn_engine.h"

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

ssize_t tn_tls_write(struct tn_relay *r, const unsigned char *p, size_t n)
{
	size_t rec = n < REC_MAX ? n : REC_MAX;

	(void)r;
	if (w.pend_len) {
		/* a retry: OpenSSL finishes its record from its own copy */
		if (n < w.pend_len || memcmp(p, w.pend, w.pend_len))
			w.violations++;
		if (w.room < w.pend_len)
			return 0;
		sink_add(w.pend, w.pend_len);
		w.room -= w.pend_len;
		rec = w.pend_len;
		w.pend_len = 0;
		return (ssize_t)rec;
	}
	if (w.room < rec) {
		memcpy(w.pend, p, rec);
		w.pend_len = rec;
		return 0;	/* SSL_ERROR_WANT_WRITE */
	}
	sink_add(p, rec);
	w.room -= rec;
	return (ssize_t)rec;
}

/* The rest of what tn_link.c and tn_ws.c call: nothing happens there. */
int SSL_has_pending(const SSL *s) { (void)s; return 0; }
int lws_callback_on_writable(struct lws *wsi) { (void)wsi; return 1; }
void lws_set_timeout(struct lws *wsi, enum pending_timeout reason, int secs)
{ (void)wsi; (void)reason; (void)secs; }
void lws_set_timer_usecs(struct lws *wsi, lws_usec_t usecs) { (void)wsi; (void)usecs; }
void lws_sul_schedule(struct lws_context *ctx, int tsi, lws_sorted_usec_list_t *sul,
		      sul_cb_t cb, lws_usec_t us)
{ (void)ctx; (void)tsi; (void)sul; (void)cb; (void)us; }
void lws_sul_cancel(lws_sorted_usec_list_t *sul) { (void)sul; }
struct lws_context *lws_get_context(const struct lws *wsi) { (void)wsi; return NULL; }
lws_usec_t lws_now_usecs(void) { return 0; }
void lws_set_opaque_user_data(struct lws *wsi, void *data) { (void)wsi; (void)data; }
struct lws *lws_adopt_descriptor_vhost(struct lws_vhost *vh, lws_adoption_type type,
				       lws_sock_file_fd_type fd, const char *prot, struct lws *parent)
{ (void)vh; (void)type; (void)fd; (void)prot; (void)parent; return NULL; }
int tn_conn_start(struct tn_relay *r) { (void)r; return -1; }
int tn_conn_finish(struct tn_relay *r) { (void)r; return -1; }
int tn_conn_proxy_send(struct tn_relay *r) { (void)r; return -1; }
int tn_conn_proxy_rx(struct tn_relay *r) { (void)r; return -1; }
void tn_relay_report_check(struct tn_relay *r) { (void)r; }
void tn_relay_up_drained(struct tn_relay *r) { (void)r; }
void tn_relay_ws_opened(struct tn_relay *r) { (void)r; }
int tn_relay_ws_payload(struct tn_relay *r, unsigned char *p, size_t n)
{ (void)r; (void)p; (void)n; return 0; }
void tn_classify_http_status(struct tn_engine *eng, struct tn_relay *r, unsigned int status)
{ (void)eng; (void)r; (void)status; }
int tn_tls_start(struct tn_relay *r) { (void)r; return -1; }
int tn_tls_handshake(struct tn_relay *r) { (void)r; return -1; }
ssize_t tn_tls_read(struct tn_relay *r, unsigned char *buf, size_t cap)
{ (void)r; (void)buf; (void)cap; return 0; }
void tn_tls_free(struct tn_relay *r) { (void)r; }

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

static int writeable(struct tn_relay *r)
{
	return tn_link_callback(NULL, LWS_CALLBACK_RAW_WRITEABLE_FILE, r);
}

int main(void)
{
	static const unsigned char ping[] = "are you there?";
	static unsigned char data[100000], got[TN_FRAME_MAX];
	struct tn_engine eng;
	struct tn_relay r;
	size_t off = 0, n, i, sent = 0;
	int op;

	memset(&eng, 0, sizeof(eng));
	memset(&r, 0, sizeof(r));
	eng.txbuf = malloc(TN_WS_HDR_MAX + TN_FRAME_MAX);
	CHECK(eng.txbuf);
	eng.cfg.host = "link.test";
	eng.mask_seed = 0x9E3779B97F4A7C15ULL;
	r.eng = &eng;
	r.ws = (struct lws *)&r;	/* never dereferenced by the stubs */
	r.phase = TN_PH_OPEN;
	r.ws_up = 1;
	r.wsp.need = 2;
	tn_ring_init(&r.up, TN_RING_CAP);
	tn_ring_init(&r.down, TN_RING_CAP);
	for (i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);

	/* a busy upload: the first frame only partly fits the socket */
	CHECK(tn_ring_write(&r.up, data, sizeof(data)) == sizeof(data));
	w.room = 20000;
	CHECK(writeable(&r) == 0);
	CHECK(r.tx_pend && w.pend_len);

	/* the server sends a Ping, then a Close */
	CHECK(tn_link_control(&r, TN_WS_OP_PING, ping, sizeof(ping) - 1) == 0);
	unsigned char code[2] = { 0x03, 0xe8 };
	CHECK(tn_link_control(&r, TN_WS_OP_CLOSE, code, 2) == 0);

	/* room for exactly what is pending: the pong meets a full socket */
	w.room = r.tx_len - r.tx_off;
	CHECK(writeable(&r) == 0);
	CHECK(w.violations == 0);

	/* the socket drains: everything goes, the link is done after the close */
	w.room = 1 << 20;
	CHECK(writeable(&r) == -1);
	CHECK(w.violations == 0);
	CHECK(!r.tx_pend && !w.pend_len);

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

	tn_link_free(&r);
	tn_ring_free(&r.up);
	tn_ring_free(&r.down);
	free(eng.txbuf);
	free(w.sink);
	printf("link ok: %zu data bytes, pong, close; %zu bytes on the wire\n", sent, w.len);
	return 0;
}
