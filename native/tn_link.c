/*
 * tn_link.c - the WebSocket's own connection (see tn_link.h), driven by
 * its watch in the loop: TCP connect -> (proxy CONNECT) -> TLS -> upgrade
 * -> frames, keep-alive and the close handshake.
 *
 * Received data is read up to 64 KiB at a time into the engine's scratch
 * buffer and the frames decoded in place; the owner gets the payload runs
 * of one read together (one local write, not one per frame, no copy). Nothing stays in the scratch buffers between events, so an
 * idle link holds only its SSL and this state.
 *
 * One writer: a WebSocket has one pending buffer (tx_pend). While TLS has
 * not taken it all, nothing else goes to TLS past it (OpenSSL wants the
 * unfinished record offered again first); a frame made meanwhile (a pong,
 * then the close) is appended behind it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_link.h"

#define TN_RX_ROUNDS		16	/* 64 KiB reads per event: others get a turn */
#define TN_SMALL_READ		(16 * 1024)	/* less than one full TLS record */

static int tn_link_event(void *ctx, enum tn_loop_ev ev, unsigned char *in, size_t len);

/* The facts of a failure of this link, in the phase it is in. */
static struct tn_facts tn_link_facts(const struct tn_link *l)
{
	static const enum tn_err_phase phases[] = {
		[TN_PH_TCP] = TN_P_CONNECT, [TN_PH_PROXY] = TN_P_PROXY, [TN_PH_TLS] = TN_P_TLS,
		[TN_PH_UPGRADE] = TN_P_UPGRADE, [TN_PH_OPEN] = TN_P_FRAME,
	};
	const struct tn_config *c = l->env->cfg;

	return (struct tn_facts){ .host = c->host, .port = c->port, .phase = phases[l->phase] };
}

/* The server ended the connection (close frame, EOF, reset), unless it
 * only answered an end that began here. */
static void tn_link_server_ended(struct tn_link *l)
{
	if (!l->close_sent && !l->close_wanted)
		l->remote_end = 1;
}

/* TLS says the connection is over: a failure unless it was the server's
 * orderly end or the close handshake had begun (however the TCP
 * connection goes down after a Close frame is the end already agreed on). */
static int tn_link_io_end(struct tn_link *l, enum tn_io io, const struct tn_err *e)
{
	tn_link_server_ended(l);
	if (io == TN_IO_ERROR && !l->close_sent && !l->peer_closed && l->err.reason == TN_R_OK)
		l->err = *e;
	return -1;
}

static void tn_link_want_write(struct tn_link *l)
{
	if (l->w)
		tn_loop_want_write(l->w);
}

static void tn_link_set_close(struct tn_link *l, unsigned code)
{
	l->close_code[0] = (unsigned char)(code >> 8);
	l->close_code[1] = (unsigned char)code;
}

static void tn_link_pend_free(struct tn_link *l)
{
	if (!l->tx_pend)
		return;
	if (l->phase != TN_PH_OPEN)	/* the upgrade request: credentials */
		explicit_bzero(l->tx_pend, l->tx_len);
	free(l->tx_pend);	/* busy links only: idle ones keep nothing */
	l->tx_pend = NULL;
	l->tx_len = l->tx_off = 0;
}

/* Keep n bytes for later, behind what is already pending. What TLS has
 * not taken stays first and unchanged: OpenSSL wants a retried write to
 * start with the same bytes (it may move: ACCEPT_MOVING_WRITE_BUFFER). */
static int tn_link_pend(struct tn_link *l, const unsigned char *p, size_t n)
{
	size_t keep = l->tx_pend ? l->tx_len - l->tx_off : 0;
	unsigned char *b = malloc(keep + n);

	if (!b) {
		struct tn_facts f = tn_link_facts(l);

		return tn_err_resource(&l->err, ENOMEM, &f);
	}
	if (keep)
		memcpy(b, l->tx_pend + l->tx_off, keep);
	memcpy(b + keep, p, n);
	tn_link_pend_free(l);
	l->tx_pend = b;
	l->tx_len = keep + n;
	l->tx_off = 0;
	tn_link_want_write(l);
	return 0;
}

/* Queue-or-send: TLS takes what it can now; the rest is kept (already
 * masked) and finished on the next write event before anything else. */
static int tn_link_write(struct tn_link *l, const unsigned char *p, size_t n)
{
	size_t off = 0;

	if (l->tx_pend)
		return tn_link_pend(l, p, n);
	while (off < n) {
		struct tn_err e;
		size_t put;
		enum tn_io io = tn_tls_write(&l->tls, p + off, n - off, &put, &e);

		if (io == TN_IO_DONE) {
			off += put;
			continue;
		}
		if (io == TN_IO_WANT_WRITE || io == TN_IO_WANT_READ)
			break;
		return tn_link_io_end(l, io, &e);
	}
	if (off == n)
		return 0;
	return tn_link_pend(l, p + off, n - off);
}

/* 1 while bytes are still pending, 0 when all left, -1 on failure. */
static int tn_link_flush(struct tn_link *l)
{
	while (l->tx_pend) {
		struct tn_err e;
		size_t put;
		enum tn_io io = tn_tls_write(&l->tls, l->tx_pend + l->tx_off, l->tx_len - l->tx_off,
					     &put, &e);

		if (io == TN_IO_WANT_WRITE || io == TN_IO_WANT_READ) {
			tn_link_want_write(l);
			return 1;
		}
		if (io != TN_IO_DONE)
			return tn_link_io_end(l, io, &e);
		l->tx_off += put;
		if (l->tx_off == l->tx_len)
			tn_link_pend_free(l);
	}
	return 0;
}

/* src NULL: the payload is already at txbuf + TN_WS_HDR_MAX. */
static int tn_link_send_frame(struct tn_link *l, int opcode, const unsigned char *src, size_t n)
{
	unsigned char *frame;
	size_t len = tn_ws_frame(&l->ws, opcode, l->env->txbuf + TN_WS_HDR_MAX, src, n, &frame);

	return tn_link_write(l, frame, len);
}

static int tn_link_send_close(struct tn_link *l)
{
	l->close_sent = 1;
	/* wait a little for the server's answer, so the last data is not
	 * cut off by a reset from closing with unread bytes */
	tn_loop_deadline(l->w, TN_CLOSE_WAIT_SECS);
	return tn_link_send_frame(l, TN_WS_OP_CLOSE, l->close_code, 2);
}

int tn_link_open(struct tn_link *l, const struct tn_link_env *env, const struct tn_link_ops *ops,
		 void *ctx)
{
	memset(l, 0, sizeof(*l));
	l->env = env;
	l->ops = ops;
	l->ctx = ctx;
	l->fd = -1;
	l->phase = TN_PH_TCP;
	tn_err_clear(&l->err);
	tn_conn_init(&l->conn, env->cfg);
	tn_ws_init(&l->ws, env->cfg->host, 0);
	tn_ring_init(&l->up, TN_RING_CAP);
	if (tn_conn_start(&l->conn, &l->fd, &l->err))
		return -1;
	l->w = tn_loop_adopt(env->loop, l->fd, TN_WATCH_FILE, tn_link_event, l);
	if (!l->w)	/* the loop closed the socket */
		return TN_FAIL(&l->err, TN_R_INTERNAL, .detail = "watching the tunnel socket");
	l->hs_started = tn_loop_now_us();	/* the deadline covers every address tried */
	tn_loop_deadline(l->w, TN_HS_SECS);
	tn_loop_want_write(l->w);	/* POLLOUT: the connect finished */
	return 0;
}

/* TLS handshake step; on success the upgrade request goes out at once. */
static int tn_link_tls_step(struct tn_link *l)
{
	const struct tn_config *c = l->env->cfg;
	char *req = (char *)l->env->txbuf;
	struct tn_ws_req q;
	int n, rc;

	switch (tn_tls_handshake(&l->tls, &l->err)) {
	case TN_IO_DONE:
		break;
	case TN_IO_WANT_READ:
		return 0;	/* POLLIN is always on for the link */
	case TN_IO_WANT_WRITE:
		tn_link_want_write(l);
		return 0;
	default:
		return -1;
	}
	l->phase = TN_PH_UPGRADE;
	/* set_authorization() may swap the value from another thread */
	pthread_mutex_lock(l->env->auth_mu);
	q.host = c->host;
	q.port = c->port;
	q.path = c->path;
	q.authorization = c->authorization;
	q.instance = c->instance;
	q.target_port = c->target_port;
	n = tn_ws_request(&l->ws, &q, req, TN_WS_HDR_MAX + TN_FRAME_MAX);
	pthread_mutex_unlock(l->env->auth_mu);
	if (n < 0)
		return TN_FAIL(&l->err, TN_R_INTERNAL, .detail = "upgrade request too long");
	rc = tn_link_write(l, (unsigned char *)req, (size_t)n);
	explicit_bzero(req, (size_t)n);	/* it held the Authorization value */
	return rc;
}

static int tn_link_start_tls(struct tn_link *l)
{
	const struct tn_config *c = l->env->cfg;

	if (tn_tls_start(&l->tls, l->env->ssl_ctx, l->fd, c->host, c->port, c->ca_file != NULL, &l->err))
		return -1;
	l->phase = TN_PH_TLS;
	return tn_link_tls_step(l);
}

static void tn_link_opened(struct tn_link *l)
{
	l->phase = TN_PH_OPEN;
	l->opened = 1;
	tn_loop_deadline(l->w, 0);
	tn_loop_timer(l->w, (int64_t)l->env->ping_secs * 1000000);
	l->ops->opened(l->ctx);	/* may ask to close at once (check) */
	if (tn_ring_used(&l->up) || l->close_wanted || l->txt)
		tn_link_want_write(l);
}

#define TN_LINK_RUNS	16	/* payload runs handed on at once */

/* Frames in buf: the payload runs are handed on together (one local
 * write, not one per frame, and no copy); control frames answered. -1 closes. */
static int tn_link_frames(struct tn_link *l, unsigned char *buf, size_t n)
{
	struct iovec runs[TN_LINK_RUNS];
	unsigned char *p = buf;
	size_t left = n;
	struct tn_ws_msg m;
	struct tn_err e;
	int ev, rc = 0, nruns = 0;

	while ((ev = tn_ws_next(&l->ws, &p, &left, &m, &e)) != TN_WS_MORE) {
		if (ev < 0) {
			if (l->err.reason == TN_R_OK)
				l->err = e;
			rc = -1;
			break;
		}
		switch (ev) {
		case TN_WS_DATA:
			if (nruns == TN_LINK_RUNS) {	/* many small frames */
				if (l->ops->data(l->ctx, runs, nruns))
					return -1;
				nruns = 0;
			}
			runs[nruns].iov_base = m.p;
			runs[nruns].iov_len = m.n;
			nruns++;
			break;
		case TN_WS_PING:	/* answer the latest one */
			memcpy(l->pong, m.p, m.n);
			l->pong_len = (uint8_t)m.n;
			l->pong_due = 1;
			tn_link_want_write(l);
			break;
		case TN_WS_CLOSE:	/* 1011 included: the normal end */
			l->peer_closed = 1;
			tn_link_server_ended(l);
			if (!l->close_sent)
				tn_link_set_close(l, m.n >= 2 ? ((unsigned)m.p[0] << 8 | m.p[1]) :
						  TN_WS_CLOSE_NORMAL);
			tn_link_want_write(l);
			break;
		default:	/* unsolicited pongs are keep-alives */
			break;
		}
	}
	/* what came before a bad frame is delivered */
	if (nruns && l->ops->data(l->ctx, runs, nruns))
		return -1;
	if (rc)
		return rc;
	if (l->peer_closed && l->close_sent)
		return -1;	/* the close handshake is complete */
	return 0;
}

/* Received bytes: the 101 first (once), then frames. -1 closes. */
static int tn_link_rx(struct tn_link *l, unsigned char *buf, size_t n)
{
	l->rx_seen = 1;
	if (l->refusal_timed) {	/* the refusal is err already: only its body is read */
		if (!tn_ws_body_rx(&l->ws, buf, n))
			return 0;
		tn_ws_body_message(&l->ws, &l->err);
		return -1;
	}
	if (l->phase == TN_PH_UPGRADE) {
		ssize_t used = tn_ws_handshake_rx(&l->ws, buf, n, &l->err);

		if (used < 0 && tn_ws_body_more(&l->ws)) {
			/* the rest of a refusal's body (the site says why there):
			 * worth a moment, not the whole handshake deadline */
			l->refusal_timed = 1;
			tn_loop_deadline(l->w, TN_REFUSAL_SECS);
			return 0;
		}
		if (used <= 0)
			return (int)used;
		tn_link_opened(l);
		buf += used;	/* frames right behind the 101 */
		n -= (size_t)used;
	}
	if (l->close_wanted && !l->linger)
		return 0;	/* only the goodbye is left */
	return n ? tn_link_frames(l, buf, n) : 0;
}

/* Read and decode until TLS has nothing more, the owner is full, or this
 * link had its turn. -1 closes the link. */
static int tn_link_drain(struct tn_link *l)
{
	unsigned char *buf = l->env->rxbuf;
	int i;

	l->rx_kick = 0;
	for (i = 0; i < TN_RX_ROUNDS; i++) {
		enum tn_io io = TN_IO_WANT_READ;
		struct tn_err e;
		size_t n = 0, got;

		if (l->paused)
			return 0;	/* tn_link_pause(l, 0) reads on */
		/* SSL_read gives one record (16 KiB) per call: gather up to
		 * 64 KiB first, so the owner gets one write per 64 KiB */
		while (n < TN_TLS_READ) {
			io = tn_tls_read(&l->tls, buf + n, TN_TLS_READ - n, &got, &e);
			if (io != TN_IO_DONE)
				break;
			n += got;
			if (l->phase == TN_PH_UPGRADE)
				break;	/* the 101 may change what follows */
			if (n < TN_SMALL_READ && !tn_tls_pending(&l->tls)) {
				/* a small message and OpenSSL holds nothing more:
				 * skip the recv() that would most likely say EAGAIN
				 * (one syscall per round trip); poll() reports what
				 * the kernel still has. Bulk reads go on. */
				io = TN_IO_WANT_READ;
				break;
			}
		}
		if (n && tn_link_rx(l, buf, n))
			return -1;
		if (l->close_wanted && !l->linger && l->opened)
			return 0;	/* only the goodbye is left */
		if (io == TN_IO_WANT_WRITE) {	/* a key update wants to go out first */
			l->rx_kick = 1;
			tn_link_want_write(l);
			return 0;
		}
		if (io == TN_IO_EOF || io == TN_IO_ERROR) {
			tn_link_io_end(l, io, &e);	/* a refusal is err already */
			if (l->phase == TN_PH_UPGRADE && l->err.reason == TN_R_OK) {
				struct tn_facts f = tn_link_facts(l);

				tn_err_set(&l->err, TN_R_CONNECT_CLOSED, &f);
			}
			return -1;	/* the server went away: the owner sees the end */
		}
		if (io == TN_IO_WANT_READ)
			return 0;	/* TLS wants more from the socket: poll() will say */
	}
	/* turn used up: OpenSSL may hold read-ahead bytes poll() cannot see */
	l->rx_kick = 1;
	tn_link_want_write(l);
	return 0;
}

ssize_t tn_link_send(struct tn_link *l, const unsigned char *p, size_t n)
{
	const struct tn_link_env *env = l->env;
	size_t done = 0, k;

	if (l->w && l->opened && !tn_ring_used(&l->up) && !l->tx_pend && !l->txt && !l->close_sent &&
	    !l->peer_closed) {
		while (done < n && !l->tx_pend) {	/* nothing queued: frame it now */
			k = n - done > TN_FRAME_MAX ? TN_FRAME_MAX : n - done;
			if (tn_link_send_frame(l, TN_WS_OP_BINARY, p + done, k)) {
				tn_loop_kill(l->w);
				return -1;
			}
			done += k;	/* what TLS did not take is in tx_pend, in order */
			l->bytes_up += k;
			atomic_fetch_add(env->bytes_up, k);
		}
		if (done == n)
			return (ssize_t)done;
	}
	k = tn_ring_write(&l->up, p + done, n - done);
	if (k == (size_t)-1)
		return (ssize_t)done;	/* no memory for the queue: the owner sees it short */
	done += k;
	if (k && l->opened)
		tn_link_want_write(l);
	return (ssize_t)done;
}

void tn_link_text(struct tn_link *l, struct tn_text *t)
{
	if (!l->w || l->close_sent || l->close_wanted || l->peer_closed) {
		free(t);
		return;
	}
	t->next = NULL;
	if (l->txt_tail)
		l->txt_tail->next = t;
	else
		l->txt = t;
	l->txt_tail = t;
	if (l->opened)
		tn_link_want_write(l);
}

static void tn_link_texts_free(struct tn_link *l)
{
	while (l->txt) {
		struct tn_text *t = l->txt;

		l->txt = t->next;
		free(t);
	}
	l->txt_tail = NULL;
}

size_t tn_link_room(const struct tn_link *l)
{
	return tn_ring_space(&l->up);
}

void tn_link_pause(struct tn_link *l, int paused)
{
	l->paused = paused ? 1 : 0;
	if (!l->w)
		return;
	tn_loop_pause(l->w, paused);
	if (!paused && l->phase == TN_PH_OPEN) {
		l->rx_kick = 1;	/* read-ahead bytes may be waiting inside OpenSSL */
		tn_loop_want_write(l->w);
	}
}

void tn_link_close(struct tn_link *l, unsigned code, int linger)
{
	if (l->close_wanted)
		return;
	l->close_wanted = 1;
	l->linger = linger ? 1 : 0;
	if (!l->close_sent && !l->peer_closed)
		tn_link_set_close(l, code);
	if (l->opened)
		tn_link_want_write(l);
}

void tn_link_abort(struct tn_link *l)
{
	if (l->w)
		tn_loop_kill(l->w);
}

/* Open link, socket writable: pending bytes, control frames, then data. */
static int tn_link_writeable_open(struct tn_link *l)
{
	const struct tn_link_env *env = l->env;
	int rc, i;

	if (l->rx_kick && tn_link_drain(l))
		return -1;
	rc = tn_link_flush(l);
	if (rc)
		return rc < 0 ? -1 : 0;
	if (l->pong_due && !l->close_sent) {
		l->pong_due = 0;
		if (tn_link_send_frame(l, TN_WS_OP_PONG, l->pong, l->pong_len))
			return -1;
	}
	if (l->ping_due && !l->close_sent && !l->tx_pend) {
		l->ping_due = 0;
		if (tn_link_send_frame(l, TN_WS_OP_PING, NULL, 0))
			return -1;
	}
	if (l->peer_closed && !l->close_sent && tn_link_send_close(l))	/* echo the server's close */
		return -1;
	while (l->txt && !l->tx_pend && !l->close_sent) {
		struct tn_text *t = l->txt;

		l->txt = t->next;
		if (!l->txt)
			l->txt_tail = NULL;
		rc = tn_link_send_frame(l, TN_WS_OP_TEXT, t->data, t->len);
		free(t);
		if (rc)
			return -1;
	}
	if (l->close_sent) {
		if (l->tx_pend)
			return 0;
		/* an answered close, or one that waits for nothing, is done;
		 * ours waits for the reply */
		return l->peer_closed || !l->linger ? -1 : 0;
	}
	for (i = 0; i < 8 && !l->tx_pend && tn_ring_used(&l->up); i++) {
		size_t n = tn_ring_copyout(&l->up, env->txbuf + TN_WS_HDR_MAX, TN_FRAME_MAX);

		if (tn_link_send_frame(l, TN_WS_OP_BINARY, NULL, n))
			return -1;
		tn_ring_consume(&l->up, n);
		l->bytes_up += n;
		atomic_fetch_add(env->bytes_up, n);
	}
	l->ops->drained(l->ctx);
	if (tn_ring_used(&l->up)) {
		tn_link_want_write(l);
	} else if (l->close_wanted && !l->tx_pend) {	/* everything sent */
		if (tn_link_send_close(l))
			return -1;
		if (!l->tx_pend && !l->linger)
			return -1;
	}
	return 0;
}

static int tn_link_writeable(struct tn_link *l)
{
	int rc;

	switch (l->phase) {
	case TN_PH_TCP:
		rc = tn_conn_finish(&l->conn, &l->fd, &l->err);
		if (rc < 0)
			return -1;
		if (!rc) {	/* the next address, on a new socket */
			if (tn_loop_replace(l->w, l->fd))
				return TN_FAIL(&l->err, TN_R_INTERNAL,
					       .detail = "watching the tunnel socket");
			tn_loop_deadline(l->w, TN_HS_SECS);
			tn_loop_want_write(l->w);
			return 0;
		}
		if (l->env->cfg->proxy) {
			l->phase = TN_PH_PROXY;
			return tn_conn_proxy_send(&l->conn, l->fd, &l->err);
		}
		return tn_link_start_tls(l);
	case TN_PH_PROXY:
		return 0;
	case TN_PH_TLS:
		return tn_link_tls_step(l);
	case TN_PH_UPGRADE:
		rc = tn_link_flush(l);
		return rc < 0 ? -1 : 0;
	case TN_PH_OPEN:
		break;
	}
	return tn_link_writeable_open(l);
}

static int tn_link_readable(struct tn_link *l)
{
	int rc;

	switch (l->phase) {
	case TN_PH_TCP:
		return 0;	/* the outcome comes with POLLOUT */
	case TN_PH_PROXY:
		rc = tn_conn_proxy_rx(&l->conn, l->fd, &l->err);
		if (rc <= 0)
			return rc;
		return tn_link_start_tls(l);
	case TN_PH_TLS:
		return tn_link_tls_step(l);
	case TN_PH_UPGRADE:
	case TN_PH_OPEN:
		break;
	}
	return tn_link_drain(l);
}

/* Keep-alive tick: a ping each interval; hang up when nothing at all has
 * arrived for the hang-up time (a paused WebSocket included, as with lws).
 * Also the moment to return an idle queue's buffer. */
static int tn_link_timer(struct tn_link *l)
{
	const struct tn_link_env *env = l->env;

	if (l->rx_seen || l->paused)
		l->idle_secs = 0;
	else if (l->idle_secs + env->ping_secs < 65535)
		l->idle_secs = (uint16_t)(l->idle_secs + env->ping_secs);
	l->rx_seen = 0;
	if (l->idle_secs >= env->hangup_secs) {
		struct tn_facts f = tn_link_facts(l);

		tn_err_set(&l->err, TN_R_CLOSED_SILENT, &f);
		return -1;
	}
	tn_ring_trim(&l->up);
	if (!l->close_sent && !l->peer_closed) {
		l->ping_due = 1;
		tn_link_want_write(l);
	}
	tn_loop_timer(l->w, (int64_t)env->ping_secs * 1000000);
	return 0;
}

/* The connection went away before it opened and nothing said why: either
 * the handshake deadline fired (the server stayed silent) or the peer hung up. */
static void tn_link_note_handshake_end(struct tn_link *l)
{
	struct tn_facts f = tn_link_facts(l);

	if (l->err.reason != TN_R_OK)
		return;
	if (l->hs_started && tn_loop_now_us() - l->hs_started >= (int64_t)TN_HS_SECS * 1000000) {
		f.timeout_ms = TN_HS_SECS * 1000;
		tn_err_set(&l->err, TN_R_TIMEOUT_HANDSHAKE, &f);
	} else {
		tn_err_set(&l->err, TN_R_CONNECT_CLOSED, &f);
	}
}

static int tn_link_event(void *ctx, enum tn_loop_ev ev, unsigned char *in, size_t len)
{
	struct tn_link *l = ctx;

	(void)in;
	(void)len;
	switch (ev) {
	case TN_LOOP_READ:
		return tn_link_readable(l);
	case TN_LOOP_WRITE:
		return tn_link_writeable(l);
	case TN_LOOP_TIMER:
		return tn_link_timer(l);
	case TN_LOOP_GONE:
		l->w = NULL;
		if (!l->opened)
			tn_link_note_handshake_end(l);
		if (l->refusal_timed)	/* the body ended early (EOF, its deadline) */
			tn_ws_body_message(&l->ws, &l->err);
		tn_link_free(l);
		l->ops->closed(l->ctx);	/* the owner may free l: nothing after this */
		return 0;
	}
	return 0;
}

void tn_link_free(struct tn_link *l)
{
	tn_tls_free(&l->tls);
	tn_conn_free(&l->conn);
	tn_ws_free(&l->ws);
	if (l->tx_pend)
		explicit_bzero(l->tx_pend, l->tx_len);	/* may be the upgrade request */
	free(l->tx_pend);
	l->tx_pend = NULL;
	l->tx_len = l->tx_off = 0;
	tn_link_texts_free(l);
	tn_ring_free(&l->up);
}
