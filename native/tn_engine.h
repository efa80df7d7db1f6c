/*
 * tn_engine.h - the tunnel engine shared by the native files.
 *
 * One lws context, one service thread. Everything lws is touched only from
 * that thread, except lws_cancel_service(), which other threads use to wake
 * it after posting a request under eng->mu (stop, check).
 */
#ifndef TN_ENGINE_H
#define TN_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "tn_err.h"
#include "tn_events.h"
#include "tn_ring.h"

#define TN_RING_CAP	(256 * 1024)	/* per direction, per connection */
#define TN_LOCAL_CHUNK	(64 * 1024)	/* lws raw read size (pt_serv_buf_size) */
#define TN_WS_RX_CHUNK	(16 * 1024)	/* ws rx buffer: kept per connection, so small */
#define TN_FRAME_MAX	(64 * 1024)	/* largest binary message we send */
#define TN_TUNNEL_PATH	"/AppServiceTunnel/Tunnel.ashx"

struct tn_config {
	char *host;		/* SCM host name (no port) */
	int port;		/* SCM port (443) */
	char *authorization;	/* full header value; wiped on free */
	char *bind_addr;	/* local listen address */
	int bind_port;		/* 0: the kernel picks */
	char *instance;		/* ARRAffinity cookie value, or NULL */
	int target_port;	/* AppsvcTunnelPort, or 0 */
	int ping_secs;		/* client keep-alive */
	char *ca_file;		/* REQUESTS_CA_BUNDLE, or NULL: system store */
	int verify;		/* 0 only when the user turned it off */
	char *proxy;		/* "host:port" HTTP CONNECT proxy, or NULL */
};

struct tn_stats {
	atomic_uint_fast64_t open, total, bytes_up, bytes_down, failures;
};

struct tn_engine {
	struct tn_config cfg;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	lws_retry_bo_t retry;	/* keep-alive policy for the WebSockets */
	int listen_fd;
	int port;		/* bound local port */
	pthread_t thread;
	int thread_started;
	atomic_int stopping;	/* set by tn_engine_stop */
	atomic_int running;	/* service loop alive */
	struct tn_stats stats;
	uint64_t next_id;	/* service thread only */
	struct tn_events events;
	unsigned char *txbuf;	/* LWS_PRE + TN_FRAME_MAX scratch, service thread only */

	/* the one outstanding check() request, guarded by mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t check_gen;	/* bumped per request */
	int check_requested;	/* service thread should launch one */
	int check_done;		/* result below is for check_gen */
	struct tn_err check_err;
};

/* A relay: one accepted local socket and its WebSocket. Shared by both
 * wsi (their opaque user data); freed by whichever side is destroyed last. */
struct tn_relay {
	struct tn_engine *eng;
	struct lws *local;	/* raw adopted socket, NULL once destroyed */
	struct lws *ws;		/* client WebSocket, NULL once destroyed */
	uint64_t id;
	uint64_t check_gen;	/* is_check: which request this answers */
	struct tn_ring up;	/* local -> ws */
	struct tn_ring down;	/* ws -> local */
	uint64_t bytes_up, bytes_down;
	unsigned is_check:1, ws_up:1, ws_gone:1, local_gone:1,
		 local_paused:1, ws_paused:1, in_connect:1, finish_pending:1,
		 reported:1;
	char peer[64];
	struct tn_err err;	/* why the WebSocket failed, if it did */
};

/* tn_engine.c */
int tn_engine_create(struct tn_engine **out, struct tn_config *cfg, struct tn_err *err);
int tn_engine_start(struct tn_engine *eng, struct tn_err *err);
int tn_engine_check(struct tn_engine *eng, int timeout_ms, struct tn_err *err);
void tn_engine_stop(struct tn_engine *eng);
void tn_engine_free(struct tn_engine *eng);
void tn_config_free(struct tn_config *cfg);

/* tn_listen.c */
int tn_listen_open(const char *addr, int port, int *fd_out, int *port_out, struct tn_err *err);
int tn_listen_accept(struct tn_engine *eng);

/* tn_relay.c */
struct tn_relay *tn_relay_new(struct tn_engine *eng);
int tn_relay_connect(struct tn_relay *r);
int tn_relay_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      struct tn_relay *r, void *in, size_t len);
/* Both sides are gone (or never came): report and free. */
void tn_relay_finish(struct tn_relay *r);

/* tn_tls.c */
int tn_tls_verify(struct tn_engine *eng, struct tn_relay *r, void *x509_ctx, int preverify_ok);
void tn_classify_connect_error(struct tn_engine *eng, struct tn_relay *r, struct lws *wsi,
			       const char *why);
void tn_classify_sync_failure(struct tn_engine *eng, struct tn_relay *r);

#endif
