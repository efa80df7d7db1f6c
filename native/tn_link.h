/*
 * tn_link.h - the WebSocket's own connection: TCP connect -> (proxy
 * CONNECT) -> TLS -> upgrade -> frames, keep-alive and the close
 * handshake. The link is the single owner and the single writer of that
 * connection; it reports to its owner (the relay) through a small table
 * of callbacks and never reaches further up.
 */
#ifndef TN_LINK_H
#define TN_LINK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "tn_config.h"
#include "tn_conn.h"
#include "tn_err.h"
#include "tn_loop.h"
#include "tn_ring.h"
#include "tn_tls.h"
#include "tn_ws.h"

/* What every link shares (owned by the engine; service thread only, but
 * for cfg->authorization, read under auth_mu). */
struct tn_link_env {
	struct tn_loop *loop;
	const struct tn_config *cfg;
	struct ssl_ctx_st *ssl_ctx;
	pthread_mutex_t *auth_mu;
	unsigned char *txbuf;	/* TN_WS_HDR_MAX + TN_FRAME_MAX: one outgoing frame */
	unsigned char *rxbuf;	/* TN_TLS_READ: one gathered read */
	atomic_uint_fast64_t *bytes_up;	/* the engine's count of bytes sent */
	unsigned ping_secs;	/* a ping after this long */
	unsigned hangup_secs;	/* hang up after this long without anything received */
};

/* A Text frame waiting to go out (owned by whoever holds it). */
struct tn_text {
	struct tn_text *next;
	uint64_t conn_id;	/* whose (the engine's queue) */
	size_t len;		/* at most TN_FRAME_MAX */
	unsigned char data[];
};

/* What the link tells its owner (ctx). */
struct tn_link_ops {
	void (*opened)(void *ctx);	/* the upgrade succeeded */
	/* data payload from the server, in order, as n runs; -1 ends the link */
	int (*data)(void *ctx, const struct iovec *runs, int n);
	void (*drained)(void *ctx);	/* queued data left: tn_link_room() grew */
	/* the connection is gone (err, remote_end, opened say how); the last call */
	void (*closed)(void *ctx);
};

enum tn_phase {
	TN_PH_TCP,		/* non-blocking connect in flight */
	TN_PH_PROXY,		/* CONNECT sent, collecting the proxy's answer */
	TN_PH_TLS,		/* TLS handshake */
	TN_PH_UPGRADE,		/* upgrade request sent, collecting the 101 */
	TN_PH_OPEN,		/* relaying frames */
};

struct tn_link {
	const struct tn_link_env *env;
	const struct tn_link_ops *ops;
	void *ctx;
	struct tn_watch *w;	/* NULL before the connect and once gone */
	int fd;
	enum tn_phase phase;
	struct tn_conn conn;
	struct tn_tls tls;
	struct tn_ws ws;
	struct tn_ring up;	/* data waiting for the WebSocket */
	uint64_t bytes_up;
	int64_t hs_started;	/* when the first connect began (handshake deadline) */
	unsigned char *tx_pend;	/* masked bytes TLS has not taken yet; later frames queue behind */
	size_t tx_len, tx_off;
	struct tn_text *txt, *txt_tail;	/* Text frames to send before more data */
	uint16_t idle_secs;	/* keep-alive: seconds without anything received */
	uint8_t pong_len;
	unsigned char pong[125];
	unsigned char close_code[2];	/* what our close frame says */
	unsigned opened:1, paused:1, rx_seen:1, rx_kick:1, ping_due:1, pong_due:1,
		 peer_closed:1, close_sent:1, close_wanted:1, linger:1,
		 refusal_timed:1,	/* reading a refused upgrade's body (its own deadline) */
		 remote_end:1;	/* the server ended it (close frame, EOF, reset) */
	struct tn_err err;	/* why it failed, if it did */
};

/* Start connecting. -1 with l->err when it failed at once (no callback
 * follows); otherwise ops->closed comes exactly once, at the end. */
int tn_link_open(struct tn_link *l, const struct tn_link_env *env, const struct tn_link_ops *ops,
		 void *ctx);
/* Data for the server: framed now when nothing waits before it, else
 * queued. Returns the bytes taken (fewer when the queue is full), or -1
 * when the link failed. */
ssize_t tn_link_send(struct tn_link *l, const unsigned char *p, size_t n);
/* A Text frame (t is taken over): sent once the WebSocket is open, before
 * the data queued by then; dropped when the link is ending. */
void tn_link_text(struct tn_link *l, struct tn_text *t);
/* Room left in the queue. */
size_t tn_link_room(const struct tn_link *l);
/* Stop (1) or resume (0) reading from the server (back-pressure). */
void tn_link_pause(struct tn_link *l, int paused);
/* End from our side once everything queued is sent: a close frame with
 * code, then (linger) wait for the server's answer or not. */
void tn_link_close(struct tn_link *l, unsigned code, int linger);
/* End now, from outside the link's own events. */
void tn_link_abort(struct tn_link *l);
/* Frees what the link holds (idempotent; the descriptor is the loop's). */
void tn_link_free(struct tn_link *l);

#endif
