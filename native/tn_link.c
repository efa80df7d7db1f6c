/*
 * tn_link.c - the WebSocket's own connection, driven from lws callbacks:
 * TCP connect -> (proxy CONNECT) -> TLS -> upgrade -> frames, keep-alive
 * and the close handshake.
 *
 * The socket is adopted into the lws loop as a raw *file* descriptor: lws
 * then only reports POLLIN / POLLOUT (RAW_RX_FILE / RAW_WRITEABLE_FILE) and
 * never reads the fd itself, so OpenSSL can own it (SSL_set_fd). lws'
 * own client roles cannot be used: the ws role parses byte by byte, and
 * the raw role with TLS fails in lws 4.1.6 (TLS started before the socket).
 *
 * Received data is read 64 KiB at a time into the engine's scratch buffer
 * and parsed in place; payload goes straight to the local socket when
 * nothing is queued before it. Nothing stays in the scratch buffers
 * between callbacks, so an idle link holds only its SSL and this state.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tn_engine.h"

#define TN_CLOSE_WAIT_SECS	5	/* for the server's answer to our close */
#define TN_RX_ROUNDS		16	/* 64 KiB reads per callback: others get a turn */
#define TN_SMALL_READ		(16 * 1024)	/* less than one full TLS record */

static void tn_link_rearm_cb(lws_sorted_usec_list_t *sul)
{
	struct tn_relay *r = lws_container_of(sul, struct tn_relay, rearm);

	if (r->ws)
		lws_callback_on_writable(r->ws);
}

/*
 * lws' raw-file role clears POLLOUT right *after* the WRITEABLE callback
 * returns, so a request made inside that callback would be lost (a stall
 * until the timeout). Such requests are re-made from a zero-delay timer
 * on the next loop turn instead.
 */
void tn_link_want_write(struct tn_relay *r)
{
	if (!r->ws)
		return;
	if (r->in_wcb)
		r->rearm_due = 1;
	else
		lws_callback_on_writable(r->ws);
}

/* The server ended the connection (close frame, EOF, reset), unless it
 * only answered an end that began here (local client gone, our close). */
static void tn_link_server_ended(struct tn_relay *r)
{
	if (!r->close_sent && !r->local_gone)
		r->remote_end = 1;
}

static void tn_link_set_close(struct tn_relay *r, unsigned code)
{
	r->close_code[0] = (unsigned char)(code >> 8);
	r->close_code[1] = (unsigned char)code;
}

/* Keep n bytes for later, behind what is already pending. What TLS has
 * not taken stays first and unchanged: OpenSSL wants a retried write to
 * start with the same bytes (it may move: ACCEPT_MOVING_WRITE_BUFFER). */
static int tn_link_pend(struct tn_relay *r, const unsigned char *p, size_t n)
{
	size_t keep = r->tx_pend ? r->tx_len - r->tx_off : 0;
	unsigned char *b = malloc(keep + n);

	if (!b)
		return tn_err_set(&r->err, TN_E_RESOURCE, 0, "out of memory");
	if (keep)
		memcpy(b, r->tx_pend + r->tx_off, keep);
	memcpy(b + keep, p, n);
	if (r->tx_pend) {
		if (r->phase != TN_PH_OPEN)	/* the upgrade request: credentials */
			explicit_bzero(r->tx_pend, r->tx_len);
		free(r->tx_pend);
	}
	r->tx_pend = b;
	r->tx_len = keep + n;
	r->tx_off = 0;
	tn_link_want_write(r);
	return 0;
}

/* Queue-or-send: TLS takes what it can now; the rest is kept (already
 * masked) and finished from WRITEABLE before anything else is sent. One
 * writer: while bytes are pending nothing goes to TLS past them (a second
 * SSL_write would interleave with the unfinished record), so a frame made
 * meanwhile (a pong, then a close) queues behind them. */
static int tn_link_write(struct tn_relay *r, const unsigned char *p, size_t n)
{
	size_t off = 0;

	if (r->tx_pend)
		return tn_link_pend(r, p, n);
	while (off < n) {
		ssize_t w = tn_tls_write(r, p + off, n - off);

		if (w < 0) {
			tn_link_server_ended(r);
			return -1;
		}
		if (!w)
			break;
		off += (size_t)w;
	}
	if (off == n)
		return 0;
	return tn_link_pend(r, p + off, n - off);
}

/* 1 while bytes are still pending, 0 when all left, -1 on failure. */
static int tn_link_flush(struct tn_relay *r)
{
	while (r->tx_pend) {
		ssize_t w = tn_tls_write(r, r->tx_pend + r->tx_off, r->tx_len - r->tx_off);

		if (w < 0) {
			tn_link_server_ended(r);
			return -1;
		}
		if (!w) {
			tn_link_want_write(r);
			return 1;
		}
		r->tx_off += (size_t)w;
		if (r->tx_off == r->tx_len) {
			if (r->phase != TN_PH_OPEN)	/* the upgrade request: credentials */
				explicit_bzero(r->tx_pend, r->tx_len);
			free(r->tx_pend);	/* busy links only: idle ones keep nothing */
			r->tx_pend = NULL;
			r->tx_len = r->tx_off = 0;
		}
	}
	return 0;
}

static int tn_link_send_frame(struct tn_relay *r, int opcode, const unsigned char *p, size_t n)
{
	unsigned char *frame;
	size_t len = tn_ws_frame(r->eng, opcode, p, n, &frame);

	return tn_link_write(r, frame, len);
}

static int tn_link_send_close(struct tn_relay *r)
{
	r->close_sent = 1;
	/* wait a little for the server's answer, so the last data is not
	 * cut off by a reset from closing with unread bytes */
	lws_set_timeout(r->ws, PENDING_TIMEOUT_CLOSE_SEND, TN_CLOSE_WAIT_SECS);
	return tn_link_send_frame(r, TN_WS_OP_CLOSE, r->close_code, 2);
}

/* Watch r->ws_fd (connecting) in the lws loop as r->ws. */
static int tn_link_adopt(struct tn_relay *r)
{
	struct tn_engine *eng = r->eng;
	lws_sock_file_fd_type fd;

	fd.filefd = r->ws_fd;
	r->ws = lws_adopt_descriptor_vhost(eng->vh, LWS_ADOPT_RAW_FILE_DESC, fd,
					   "tunnel-ws", NULL);
	if (!r->ws) {
		close(r->ws_fd);
		r->ws_fd = -1;
		return tn_err_set(&r->err, TN_E_INTERNAL, 0, "cannot watch the tunnel socket");
	}
	/* lws owns and closes the fd from here on */
	lws_set_opaque_user_data(r->ws, r);
	r->phase = TN_PH_TCP;
	if (!r->hs_started)	/* the deadline covers every address tried */
		r->hs_started = lws_now_usecs();
	lws_set_timeout(r->ws, PENDING_TIMEOUT_SENT_CLIENT_HANDSHAKE, TN_HS_SECS);
	/* POLLOUT: the connect finished. A new wsi, so asking directly is
	 * safe even inside the old one's WRITEABLE callback */
	lws_callback_on_writable(r->ws);
	return 0;
}

int tn_link_open(struct tn_relay *r)
{
	r->ws_fd = -1;
	if (tn_conn_start(r))
		return -1;
	return tn_link_adopt(r);
}

static int tn_link_start_tls(struct tn_relay *r)
{
	if (tn_tls_start(r))
		return -1;
	r->phase = TN_PH_TLS;
	return 0;
}

/* TLS handshake step; on success the upgrade request goes out at once. */
static int tn_link_tls_step(struct tn_relay *r)
{
	char *req = (char *)r->eng->txbuf;
	int rc = tn_tls_handshake(r), n;

	if (rc <= 0)
		return rc;
	r->phase = TN_PH_UPGRADE;
	/* set_authorization() may swap the value from another thread */
	pthread_mutex_lock(&r->eng->auth_mu);
	n = tn_ws_request(r, req, TN_WS_HDR_MAX + TN_FRAME_MAX);
	pthread_mutex_unlock(&r->eng->auth_mu);
	if (n < 0)
		return tn_err_set(&r->err, TN_E_INTERNAL, 0, "cannot build the upgrade request");
	rc = tn_link_write(r, (unsigned char *)req, (size_t)n);
	explicit_bzero(req, (size_t)n);	/* it held the Authorization value */
	r->hs_sent = 1;
	return rc;
}

static void tn_link_established(struct tn_relay *r)
{
	r->phase = TN_PH_OPEN;
	r->ws_up = 1;
	lws_set_timeout(r->ws, NO_PENDING_TIMEOUT, 0);
	if (r->is_check) {
		tn_relay_report_check(r);
		tn_link_set_close(r, LWS_CLOSE_STATUS_NORMAL);
		tn_link_want_write(r);	/* say goodbye */
		return;
	}
	lws_set_timer_usecs(r->ws, (lws_usec_t)r->eng->retry.secs_since_valid_ping *
			    LWS_US_PER_SEC);
	tn_relay_ws_opened(r);
}

/* Received bytes: the 101 first (once), then frames. -1 closes. */
static int tn_link_rx(struct tn_relay *r, unsigned char *buf, size_t n)
{
	r->rx_seen = 1;
	if (r->phase == TN_PH_UPGRADE) {
		ssize_t used = tn_ws_handshake_rx(r, buf, n);

		if (used <= 0)
			return (int)used;
		tn_link_established(r);
		if (r->is_check)
			return 0;
		buf += used;	/* frames right behind the 101 */
		n -= (size_t)used;
	}
	if (!r->peer_closed && n && tn_ws_parse(r, buf, n))
		return -1;
	if (r->peer_closed && r->close_sent)
		return -1;	/* the close handshake is complete */
	return 0;
}

/* Read and parse until TLS has nothing more, the relay is full, or this
 * link had its turn. -1 closes the link. */
static int tn_link_drain(struct tn_relay *r)
{
	unsigned char *buf = r->eng->rxbuf;
	int i;

	r->rx_kick = 0;
	for (i = 0; i < TN_RX_ROUNDS; i++) {
		size_t n = 0;
		ssize_t k = 0;

		if (r->ws_paused)
			return 0;	/* tn_link_resume() reads on */
		/* SSL_read gives one record (16 KiB) per call: gather up to
		 * 64 KiB first, so the local socket gets one send() per 64 KiB */
		while (n < TN_TLS_READ && r->phase != TN_PH_TCP) {
			k = tn_tls_read(r, buf + n, TN_TLS_READ - n);
			if (k <= 0)
				break;
			n += (size_t)k;
			if (r->phase == TN_PH_UPGRADE)
				break;	/* the 101 may change what follows */
			if (n < TN_SMALL_READ && !SSL_has_pending(r->ssl)) {
				/* a small message and OpenSSL holds nothing more:
				 * skip the recv() that would most likely say EAGAIN
				 * (one syscall per round trip); poll() reports what
				 * the kernel still has. Bulk reads go on. */
				k = 0;
				break;
			}
		}
		if (n && tn_link_rx(r, buf, n))
			return -1;
		if (r->is_check && r->ws_up)
			return 0;	/* only the goodbye is left */
		if (k < 0) {
			tn_link_server_ended(r);
			if (r->phase == TN_PH_UPGRADE && r->err.kind == TN_OK)
				tn_err_set(&r->err, TN_E_CONNECT, 0,
					   "%s closed the connection during the handshake",
					   r->eng->cfg.host);
			return -1;	/* the server went away: the relay sees EOF */
		}
		if (!k && n < TN_TLS_READ)
			return 0;	/* TLS wants more from the socket: poll() will say */
	}
	/* turn used up: OpenSSL may hold read-ahead bytes poll() cannot see */
	r->rx_kick = 1;
	tn_link_want_write(r);
	return 0;
}

void tn_link_resume(struct tn_relay *r)
{
	if (!r->ws || r->phase != TN_PH_OPEN)
		return;
	r->rx_kick = 1;	/* read-ahead bytes may be waiting inside OpenSSL */
	tn_link_want_write(r);
}

int tn_link_control(struct tn_relay *r, int opcode, const unsigned char *p, size_t n)
{
	switch (opcode) {
	case TN_WS_OP_PING:	/* answer the latest one */
		memcpy(r->pong, p, n);
		r->pong_len = (uint8_t)n;
		r->pong_due = 1;
		break;
	case TN_WS_OP_CLOSE:	/* 1011 included: the normal end */
		if (r->peer_closed)
			return 0;
		r->peer_closed = 1;
		tn_link_server_ended(r);
		if (!r->close_sent)
			tn_link_set_close(r, n >= 2 ? ((unsigned)p[0] << 8 | p[1]) :
					  LWS_CLOSE_STATUS_NORMAL);
		break;
	default:		/* unsolicited pongs are keep-alives */
		return 0;
	}
	tn_link_want_write(r);
	return 0;
}

ssize_t tn_link_send_direct(struct tn_relay *r, const unsigned char *p, size_t n)
{
	size_t done = 0;

	if (!r->ws || r->phase != TN_PH_OPEN || r->tx_pend || r->close_sent || r->peer_closed)
		return 0;
	while (done < n && !r->tx_pend) {
		size_t k = n - done > TN_FRAME_MAX ? TN_FRAME_MAX : n - done;

		if (tn_link_send_frame(r, TN_WS_OP_BINARY, p + done, k))
			return -1;
		done += k;	/* what TLS did not take is in tx_pend, in order */
	}
	return (ssize_t)done;
}

/* Open link, socket writable: pending bytes, control frames, then data. */
static int tn_link_writeable_open(struct tn_relay *r)
{
	struct tn_engine *eng = r->eng;
	int rc, i;

	if (r->rx_kick && tn_link_drain(r))
		return -1;
	rc = tn_link_flush(r);
	if (rc)
		return rc < 0 ? -1 : 0;
	if (r->pong_due && !r->close_sent) {
		r->pong_due = 0;
		if (tn_link_send_frame(r, TN_WS_OP_PONG, r->pong, r->pong_len))
			return -1;
	}
	if (r->ping_due && !r->close_sent && !r->tx_pend) {
		r->ping_due = 0;
		if (tn_link_send_frame(r, TN_WS_OP_PING, NULL, 0))
			return -1;
	}
	if ((r->peer_closed || r->is_check) && !r->close_sent) {
		if (tn_link_send_close(r))	/* echo the server's close, or goodbye */
			return -1;
	}
	if (r->close_sent) {
		if (r->tx_pend)
			return 0;
		/* check and an answered close are done; ours waits for the reply */
		return r->peer_closed || r->is_check ? -1 : 0;
	}
	for (i = 0; i < 8 && !r->tx_pend && tn_ring_used(&r->up); i++) {
		size_t n = tn_ring_copyout(&r->up, eng->txbuf + TN_WS_HDR_MAX, TN_FRAME_MAX);

		if (tn_link_send_frame(r, TN_WS_OP_BINARY, NULL, n))
			return -1;
		tn_ring_consume(&r->up, n);
		r->bytes_up += n;
		atomic_fetch_add(&eng->stats.bytes_up, n);
	}
	tn_relay_up_drained(r);
	if (tn_ring_used(&r->up))
		tn_link_want_write(r);
	else if (r->local_gone && !r->tx_pend)
		return tn_link_send_close(r);	/* local EOF, everything sent */
	return 0;
}

static int tn_link_writeable(struct tn_relay *r)
{
	int rc;

	switch (r->phase) {
	case TN_PH_TCP:
		rc = tn_conn_finish(r);
		if (rc < 0)
			return -1;
		if (!rc) {	/* next address on a new socket: swap wsi */
			struct lws *old = r->ws;

			r->ws = NULL;
			if (tn_link_adopt(r))
				r->ws = old;	/* its close reports the failure */
			return -1;	/* else the old wsi closes unnoticed */
		}
		if (r->eng->cfg.proxy) {
			r->phase = TN_PH_PROXY;
			return tn_conn_proxy_send(r);
		}
		if (tn_link_start_tls(r))
			return -1;
		return tn_link_tls_step(r);
	case TN_PH_PROXY:
		return 0;
	case TN_PH_TLS:
		return tn_link_tls_step(r);
	case TN_PH_UPGRADE:
		rc = tn_link_flush(r);
		return rc < 0 ? -1 : 0;
	case TN_PH_OPEN:
		break;
	}
	return tn_link_writeable_open(r);
}

static int tn_link_readable(struct tn_relay *r)
{
	int rc;

	switch (r->phase) {
	case TN_PH_TCP:
		return 0;	/* the outcome comes with POLLOUT */
	case TN_PH_PROXY:
		rc = tn_conn_proxy_rx(r);
		if (rc <= 0)
			return rc;
		if (tn_link_start_tls(r))
			return -1;
		return tn_link_tls_step(r);
	case TN_PH_TLS:
		return tn_link_tls_step(r);
	case TN_PH_UPGRADE:
	case TN_PH_OPEN:
		break;
	}
	return tn_link_drain(r);
}

/* Keep-alive tick: a ping each interval; hang up when nothing at all has
 * arrived for the hang-up time (a paused WebSocket included, as with lws).
 * Also the moment to return idle ring buffers. */
static int tn_link_timer(struct tn_relay *r)
{
	const lws_retry_bo_t *rt = &r->eng->retry;

	if (r->rx_seen || r->ws_paused)
		r->idle_secs = 0;
	else if ((unsigned)r->idle_secs + rt->secs_since_valid_ping < 65535)
		r->idle_secs = (uint16_t)(r->idle_secs + rt->secs_since_valid_ping);
	r->rx_seen = 0;
	if (r->idle_secs >= rt->secs_since_valid_hangup) {
		tn_err_set(&r->err, TN_E_CLOSED, 0, "%s stopped answering", r->eng->cfg.host);
		return -1;
	}
	tn_ring_trim(&r->up);
	tn_ring_trim(&r->down);
	if (!r->close_sent && !r->peer_closed) {
		r->ping_due = 1;
		tn_link_want_write(r);
	}
	lws_set_timer_usecs(r->ws, (lws_usec_t)rt->secs_since_valid_ping * LWS_US_PER_SEC);
	return 0;
}

int tn_link_callback(struct lws *wsi, enum lws_callback_reasons reason, struct tn_relay *r)
{
	(void)wsi;
	switch (reason) {
	case LWS_CALLBACK_RAW_WRITEABLE_FILE: {
		int rc;

		r->in_wcb = 1;
		rc = tn_link_writeable(r);
		r->in_wcb = 0;
		if (!rc && r->rearm_due)
			lws_sul_schedule(lws_get_context(r->ws), 0, &r->rearm, tn_link_rearm_cb, 1);
		r->rearm_due = 0;
		return rc;
	}
	case LWS_CALLBACK_RAW_RX_FILE:
		return tn_link_readable(r);
	case LWS_CALLBACK_TIMER:
		return tn_link_timer(r);
	default:
		return 0;
	}
}

void tn_link_free(struct tn_relay *r)
{
	lws_sul_cancel(&r->rearm);
	tn_tls_free(r);
	if (r->ai)
		freeaddrinfo(r->ai);
	r->ai = r->ai_next = NULL;
	free(r->hs_buf);
	r->hs_buf = NULL;
	free(r->ws_accept);
	r->ws_accept = NULL;
	if (r->tx_pend)
		explicit_bzero(r->tx_pend, r->tx_len);	/* may be the upgrade request */
	free(r->tx_pend);
	r->tx_pend = NULL;
}
