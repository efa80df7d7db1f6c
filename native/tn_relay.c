/*
 * tn_relay.c - one local TCP connection relayed over one WebSocket.
 *
 * Modelled on lws' protocol_lws_raw_proxy: one struct shared by both wsi,
 * a bounded ring per direction, lws_rx_flow_control() on the reading side
 * when its ring nears full (back-pressure instead of buffering), writes
 * only from WRITEABLE callbacks, and the side destroyed last frees.
 *
 * The WebSocket's connection itself is tn_link.c.
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

/* pause a reader while less than two of its reads still fit (a local
 * read is at most pt_serv_buf_size, a link read one SSL_read) */
#define TN_UP_LOW	(2 * TN_LOCAL_CHUNK)
#define TN_DOWN_LOW	(2 * TN_TLS_READ)

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
	if (kind == TN_EV_FAILED) {
		memcpy(ev.message, r->err.msg, sizeof(ev.message) < sizeof(r->err.msg) ?
		       sizeof(ev.message) : sizeof(r->err.msg));
		ev.error_kind = r->err.kind;
		ev.status = r->err.status;
	}
	ev.message[sizeof(ev.message) - 1] = '\0';
	ev.remote_closed = kind != TN_EV_OPENED && r->remote_end;
	tn_events_push(&r->eng->events, &ev);
}

void tn_relay_report_check(struct tn_relay *r)
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

	if (r->is_check) {
		tn_relay_report_check(r);
		if (eng->check_relay == r)
			eng->check_relay = NULL;
	} else {
		atomic_fetch_sub(&eng->stats.open, 1);
		/* an error recorded after the upgrade (a protocol violation, a
		 * TLS failure mid-stream) is a failure the user is told about */
		if (r->err.kind != TN_OK && !r->fail_counted)
			atomic_fetch_add(&eng->stats.failures, 1);
		if (!atomic_load(&eng->stopping))
			tn_relay_emit(r, r->err.kind != TN_OK ? TN_EV_FAILED : TN_EV_CLOSED);
	}
	tn_link_free(r);
	tn_ring_free(&r->up);
	tn_ring_free(&r->down);
	free(r);
}

/* Count a WebSocket that never opened as a failure, once. */
static void tn_relay_ws_failed(struct tn_relay *r)
{
	if (!r->fail_counted && !r->is_check)
		atomic_fetch_add(&r->eng->stats.failures, 1);
	r->fail_counted = 1;
}

int tn_relay_connect(struct tn_relay *r)
{
	r->wsp.need = 2;	/* expecting a frame header */
	if (!tn_link_open(r))
		return 0;
	/* failed before any wsi existed (DNS, refused at once): r->err says why */
	r->ws_gone = 1;
	tn_relay_ws_failed(r);
	if (r->local)
		lws_callback_on_writable(r->local);	/* -> close: EOF */
	else
		tn_relay_finish(r);
	return -1;
}

static int tn_relay_local_rx(struct tn_relay *r, struct lws *wsi, unsigned char *in, size_t len)
{
	ssize_t sent = 0;
	size_t n;

	if (r->ws_gone)
		return 0;	/* nowhere to send it; the local side is being closed */
	if (!tn_ring_used(&r->up)) {	/* nothing queued before it: frame it now */
		sent = tn_link_send_direct(r, in, len);
		if (sent < 0)
			return 0;	/* the link failed; its close ends the local side */
		r->bytes_up += (uint64_t)sent;
		atomic_fetch_add(&r->eng->stats.bytes_up, (uint64_t)sent);
		in += sent;
		len -= (size_t)sent;
		if (!len)
			return 0;
	}
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
		tn_link_want_write(r);
	return 0;
}

void tn_relay_up_drained(struct tn_relay *r)
{
	if (r->local_paused && r->local && tn_ring_space(&r->up) >= TN_UP_LOW) {
		lws_rx_flow_control(r->local, 1);
		r->local_paused = 0;
	}
}

void tn_relay_ws_opened(struct tn_relay *r)
{
	tn_relay_emit(r, TN_EV_OPENED);
	if (tn_ring_used(&r->up) || r->local_gone)
		tn_link_want_write(r);
}

/* Data payload from the server: straight to the local socket when nothing
 * is queued before it, the rest into the ring. */
int tn_relay_ws_payload(struct tn_relay *r, unsigned char *p, size_t len)
{
	struct tn_engine *eng = r->eng;
	size_t n;

	if (r->local_gone || !len)
		return 0;	/* the WebSocket is being closed behind it */
	if (!tn_ring_used(&r->down) && r->local) {
		ssize_t s = send((int)lws_get_socket_fd(r->local), p, len,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			/* the local client is gone; its wsi notices on its own */
			lws_callback_on_writable(r->local);
			return 0;
		}
		if (s > 0) {
			r->bytes_down += (uint64_t)s;
			atomic_fetch_add(&eng->stats.bytes_down, (uint64_t)s);
			p += s;
			len -= (size_t)s;
		}
		if (!len)
			return 0;
	}
	n = tn_ring_write(&r->down, p, len);
	if (n != len) {
		tn_err_set(&r->err, TN_E_INTERNAL, 0, "relay buffer exhausted");
		return -1;
	}
	if (!r->ws_paused && r->ws && tn_ring_space(&r->down) < TN_DOWN_LOW) {
		lws_rx_flow_control(r->ws, 0);
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
		tn_link_resume(r);
	}
	if (tn_ring_used(&r->down))
		lws_callback_on_writable(wsi);
	else if (r->ws_gone)
		return -1;	/* container side ended: EOF to the local client now */
	return 0;
}

/* The WebSocket went away before it opened and nothing said why: either
 * lws' handshake deadline fired (the server stayed silent) or the peer hung up. */
static void tn_relay_note_handshake_end(struct tn_relay *r)
{
	static const char *const step[] = {
		[TN_PH_TCP] = "the TCP connection", [TN_PH_PROXY] = "the proxy's CONNECT",
		[TN_PH_TLS] = "the TLS handshake", [TN_PH_UPGRADE] = "the WebSocket upgrade",
		[TN_PH_OPEN] = "the WebSocket upgrade",
	};

	if (r->err.kind != TN_OK)
		return;
	if (r->hs_started && lws_now_usecs() - r->hs_started >= (lws_usec_t)TN_HS_SECS * LWS_US_PER_SEC)
		tn_err_set(&r->err, TN_E_TIMEOUT, 0, "%s did not complete %s within %d s",
			   r->eng->cfg.host, step[r->phase], TN_HS_SECS);
	else
		tn_err_set(&r->err, TN_E_CONNECT, 0, "%s closed the connection during %s",
			   r->eng->cfg.host, step[r->phase]);
}

/* WSI_DESTROY: the last callback a wsi gets; the relay forgets it here. */
static void tn_relay_detach(struct tn_relay *r, struct lws *wsi)
{
	int live = !atomic_load(&r->eng->stopping);

	if (wsi == r->local) {
		r->local = NULL;
		r->local_gone = 1;
		if (live && r->ws && r->ws_up)
			tn_link_want_write(r);	/* flush, then close */
	} else if (wsi == r->ws) {
		r->ws = NULL;
		r->ws_gone = 1;
		if (!r->ws_up) {	/* it never opened: a failure, with a reason */
			tn_relay_note_handshake_end(r);
			tn_relay_ws_failed(r);
			tn_relay_report_check(r);
		}
		tn_link_free(r);	/* TLS state of a socket lws has closed */
		if (live && r->local)
			lws_callback_on_writable(r->local);	/* flush, then EOF */
	} else {
		return;	/* a wsi the link replaced (tn_conn_finish): not the relay's */
	}
	if (!r->local && !r->ws)
		tn_relay_finish(r);
}

int tn_relay_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      struct tn_relay *r, void *in, size_t len)
{
	if (wsi != r->local && wsi == r->ws && reason != LWS_CALLBACK_WSI_DESTROY)
		return tn_link_callback(wsi, reason, r);

	switch (reason) {
	case LWS_CALLBACK_RAW_RX:
		return tn_relay_local_rx(r, wsi, in, len);

	case LWS_CALLBACK_RAW_WRITEABLE:
		return tn_relay_local_writeable(r, wsi);

	case LWS_CALLBACK_WSI_DESTROY:
		tn_relay_detach(r, wsi);
		return 0;

	default:
		return 0;
	}
}
