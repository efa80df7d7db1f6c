/*
 * tn_relay.c - one local TCP connection relayed over one WebSocket.
 *
 * Modelled on lws' protocol_lws_raw_proxy: one struct shared by both wsi,
 * a bounded ring per direction, lws_rx_flow_control() on the reading side
 * when its ring nears full (back-pressure instead of buffering), writes
 * only from WRITEABLE callbacks, and the side destroyed last frees.
 *
 * Ends: the WebSocket going away (any close, 1011 included) flushes what
 * is buffered to the local client and then closes it, so it sees EOF; the
 * local client going away flushes the up ring and closes the WebSocket
 * with a normal close frame (WebSocket has no half-close).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tn_engine.h"

/* pause a reader while less than two of its reads still fit */
#define TN_UP_LOW	(2 * TN_LOCAL_CHUNK)
#define TN_DOWN_LOW	(4 * TN_WS_RX_CHUNK)

struct tn_relay *tn_relay_new(struct tn_engine *eng)
{
	struct tn_relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->eng = eng;
	r->id = ++eng->next_id;
	tn_ring_init(&r->up, TN_RING_CAP);
	tn_ring_init(&r->down, TN_RING_CAP);
	tn_err_clear(&r->err);
	return r;
}

static void tn_relay_emit(struct tn_relay *r, enum tn_event_kind kind)
{
	struct tn_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.conn_id = r->id;
	ev.bytes_up = r->bytes_up;
	ev.bytes_down = r->bytes_down;
	memcpy(ev.peer, r->peer, sizeof(ev.peer));
	if (kind == TN_EV_FAILED)
		memcpy(ev.message, r->err.msg, sizeof(ev.message) < sizeof(r->err.msg) ?
		       sizeof(ev.message) : sizeof(r->err.msg));
	ev.message[sizeof(ev.message) - 1] = '\0';
	tn_events_push(&r->eng->events, &ev);
}

/* check(): hand the outcome to the waiting thread, once. */
static void tn_relay_report_check(struct tn_relay *r)
{
	struct tn_engine *eng = r->eng;

	if (!r->is_check || r->reported)
		return;
	r->reported = 1;
	if (!r->ws_up && r->err.kind == TN_OK)
		tn_err_set(&r->err, TN_E_CONNECT, 0, "%s closed the connection during the handshake",
			   eng->cfg.host);
	pthread_mutex_lock(&eng->mu);
	if (r->check_gen == eng->check_gen && !eng->check_done) {
		eng->check_err = r->err;
		eng->check_done = 1;
		pthread_cond_broadcast(&eng->cv);
	}
	pthread_mutex_unlock(&eng->mu);
}

void tn_relay_finish(struct tn_relay *r)
{
	struct tn_engine *eng = r->eng;

	if (r->in_connect) {	/* lws_client_connect_via_info is still on the stack */
		r->finish_pending = 1;
		return;
	}
	if (r->is_check) {
		tn_relay_report_check(r);
	} else {
		atomic_fetch_sub(&eng->stats.open, 1);
		if (!atomic_load(&eng->stopping))
			tn_relay_emit(r, r->err.kind != TN_OK && !r->ws_up ? TN_EV_FAILED :
					 TN_EV_CLOSED);
	}
	tn_ring_free(&r->up);
	tn_ring_free(&r->down);
	free(r);
}

int tn_relay_connect(struct tn_relay *r)
{
	struct tn_engine *eng = r->eng;
	struct lws_client_connect_info ci;
	char hostport[300];
	struct lws *wsi;

	if (eng->cfg.port == 443)
		snprintf(hostport, sizeof(hostport), "%s", eng->cfg.host);
	else
		snprintf(hostport, sizeof(hostport), "%s:%d", eng->cfg.host, eng->cfg.port);

	memset(&ci, 0, sizeof(ci));
	ci.context = eng->ctx;
	ci.vhost = eng->vh;
	ci.address = eng->cfg.host;
	ci.port = eng->cfg.port;
	ci.host = hostport;	/* Host header; lws strips the port for TLS checks */
	ci.origin = hostport;
	ci.path = TN_TUNNEL_PATH;
	ci.local_protocol_name = "tunnel-ws";
	ci.ietf_version_or_minus_one = -1;
	ci.ssl_connection = LCCSCF_USE_SSL;
	if (!eng->cfg.verify)
		ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_EXPIRED |
				     LCCSCF_ALLOW_INSECURE | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	ci.retry_and_idle_policy = &eng->retry;
	ci.opaque_user_data = r;
	ci.pwsi = &r->ws;

	/* lws may fail (and destroy the wsi) before returning: defer any free */
	r->in_connect = 1;
	wsi = lws_client_connect_via_info(&ci);
	r->in_connect = 0;
	if (wsi && !r->ws_gone) {
		r->ws = wsi;
		return 0;
	}
	r->ws = NULL;
	/* lws suppresses CONNECTION_ERROR for failures inside the call (DNS,
	 * a refusal on loopback): work out the reason ourselves */
	if (r->err.kind == TN_OK)
		tn_classify_sync_failure(eng, r);
	if (!r->ws_gone) {
		r->ws_gone = 1;
		if (!r->is_check)
			atomic_fetch_add(&eng->stats.failures, 1);
	}
	if (r->local)
		lws_callback_on_writable(r->local);	/* -> close: EOF */
	if (!r->local || r->finish_pending) {
		r->finish_pending = 0;
		if (!r->local)
			tn_relay_finish(r);
	}
	return -1;
}

static int tn_relay_headers(struct tn_relay *r, struct lws *wsi, void *in, size_t len)
{
	const struct tn_config *c = &r->eng->cfg;
	unsigned char **p = in, *end = *p + len;
	char v[320];
	int n;

	if (lws_add_http_header_by_name(wsi, (const unsigned char *)"Authorization:",
					(const unsigned char *)c->authorization,
					(int)strlen(c->authorization), p, end))
		return -1;
	if (c->instance) {
		n = snprintf(v, sizeof(v), "ARRAffinity=%s", c->instance);
		if (n < 0 || (size_t)n >= sizeof(v) ||
		    lws_add_http_header_by_name(wsi, (const unsigned char *)"Cookie:",
						(const unsigned char *)v, n, p, end))
			return -1;
	}
	if (c->target_port) {
		n = snprintf(v, sizeof(v), "%d", c->target_port);
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)"AppsvcTunnelPort:",
						(const unsigned char *)v, n, p, end))
			return -1;
	}
	return 0;
}

static int tn_relay_local_rx(struct tn_relay *r, struct lws *wsi, void *in, size_t len)
{
	size_t n;

	if (r->ws_gone)
		return 0;	/* nowhere to send it; the local side is being closed */
	n = tn_ring_write(&r->up, in, len);
	if (n != len) {
		tn_err_set(&r->err, TN_E_INTERNAL, 0, "relay buffer exhausted");
		return -1;
	}
	if (!r->local_paused && tn_ring_space(&r->up) < TN_UP_LOW) {
		lws_rx_flow_control(wsi, 0);
		r->local_paused = 1;
	}
	if (r->ws && r->ws_up)
		lws_callback_on_writable(r->ws);
	return 0;
}

static int tn_relay_ws_writeable(struct tn_relay *r, struct lws *wsi)
{
	struct tn_engine *eng = r->eng;
	size_t n;

	if (r->is_check) {	/* handshake proven; close politely */
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	n = tn_ring_copyout(&r->up, eng->txbuf + LWS_PRE, TN_FRAME_MAX);
	if (n) {
		if (lws_write(wsi, eng->txbuf + LWS_PRE, n, LWS_WRITE_BINARY) < 0)
			return -1;
		tn_ring_consume(&r->up, n);
		r->bytes_up += n;
		atomic_fetch_add(&eng->stats.bytes_up, n);
		if (r->local_paused && r->local && tn_ring_space(&r->up) >= TN_UP_LOW) {
			lws_rx_flow_control(r->local, 1);
			r->local_paused = 0;
		}
	}
	if (tn_ring_used(&r->up)) {
		lws_callback_on_writable(wsi);
	} else if (r->local_gone) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	return 0;
}

static int tn_relay_ws_rx(struct tn_relay *r, struct lws *wsi, void *in, size_t len)
{
	size_t n;

	if (r->local_gone || !len)
		return 0;	/* the WebSocket is being closed behind it */
	n = tn_ring_write(&r->down, in, len);
	if (n != len) {
		tn_err_set(&r->err, TN_E_INTERNAL, 0, "relay buffer exhausted");
		return -1;
	}
	if (!r->ws_paused && tn_ring_space(&r->down) < TN_DOWN_LOW) {
		lws_rx_flow_control(wsi, 0);
		r->ws_paused = 1;
	}
	if (r->local)
		lws_callback_on_writable(r->local);
	return 0;
}

static int tn_relay_local_writeable(struct tn_relay *r, struct lws *wsi)
{
	struct tn_engine *eng = r->eng;
	int fd = (int)lws_get_socket_fd(wsi), i;

	/* plain socket: send() directly, the ring absorbs partial writes */
	for (i = 0; i < 8; i++) {
		const unsigned char *p;
		size_t n = tn_ring_peek(&r->down, &p);
		ssize_t s;

		if (!n)
			break;
		s = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (s < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			return -1;	/* the local client is gone */
		}
		tn_ring_consume(&r->down, (size_t)s);
		r->bytes_down += (uint64_t)s;
		atomic_fetch_add(&eng->stats.bytes_down, (uint64_t)s);
		if ((size_t)s < n)
			break;
	}
	if (r->ws_paused && r->ws && tn_ring_space(&r->down) >= TN_DOWN_LOW) {
		lws_rx_flow_control(r->ws, 1);
		r->ws_paused = 0;
	}
	if (tn_ring_used(&r->down))
		lws_callback_on_writable(wsi);
	else if (r->ws_gone)
		return -1;	/* container side ended: EOF to the local client now */
	return 0;
}

/* WSI_DESTROY: the last callback a wsi gets; the relay forgets it here. */
static void tn_relay_detach(struct tn_relay *r, struct lws *wsi)
{
	int live = !atomic_load(&r->eng->stopping);

	if (wsi == r->local) {
		r->local = NULL;
		r->local_gone = 1;
		if (live && r->ws && r->ws_up)
			lws_callback_on_writable(r->ws);	/* flush, then close */
	} else {
		r->ws = NULL;
		r->ws_gone = 1;
		if (live && r->local)
			lws_callback_on_writable(r->local);	/* flush, then EOF */
	}
	if (!r->local && !r->ws)
		tn_relay_finish(r);
}

int tn_relay_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      struct tn_relay *r, void *in, size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		return tn_relay_headers(r, wsi, in, len);

	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		tn_classify_connect_error(r->eng, r, wsi, in);
		if (!r->is_check)
			atomic_fetch_add(&r->eng->stats.failures, 1);
		r->ws_gone = 1;
		tn_relay_report_check(r);
		return 0;

	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		r->ws_up = 1;
		if (r->is_check) {
			tn_relay_report_check(r);
			lws_callback_on_writable(wsi);
			return 0;
		}
		tn_relay_emit(r, TN_EV_OPENED);
		if (tn_ring_used(&r->up) || r->local_gone)
			lws_callback_on_writable(wsi);
		return 0;

	case LWS_CALLBACK_CLIENT_RECEIVE:
		return tn_relay_ws_rx(r, wsi, in, len);

	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return tn_relay_ws_writeable(r, wsi);

	case LWS_CALLBACK_RAW_RX:
		return tn_relay_local_rx(r, wsi, in, len);

	case LWS_CALLBACK_RAW_WRITEABLE:
		return tn_relay_local_writeable(r, wsi);

	case LWS_CALLBACK_WSI_DESTROY:
		tn_relay_detach(r, wsi);
		return 0;

	default:
		/* server pings are answered by lws; unsolicited pongs and the
		 * server's 1011 close are normal and need nothing from us */
		return 0;
	}
}
