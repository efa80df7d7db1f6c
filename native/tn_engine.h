/*
 * tn_engine.h - the tunnel engine shared by the native files.
 *
 * One lws context, one service thread. Everything lws is touched only from
 * that thread, except lws_cancel_service(), which other threads use to wake
 * it after posting a request under eng->mu (stop, check).
 */
#ifndef TN_ENGINE_H
#define TN_ENGINE_H

#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <libwebsockets.h>

#include "tn_err.h"
#include "tn_events.h"
#include "tn_ring.h"

#define TN_RING_CAP	(256 * 1024)	/* per direction, per connection */
#define TN_LOCAL_CHUNK	(64 * 1024)	/* lws raw read size (pt_serv_buf_size) */
#define TN_TLS_READ	(64 * 1024)	/* one SSL_read into the engine's rx buffer */
#define TN_FRAME_MAX	(64 * 1024)	/* largest binary message we send */
#define TN_WS_HDR_MAX	14		/* longest client frame header */
#define TN_HS_MAX	8192		/* longest proxy / upgrade answer we accept */
/* Largest frame we accept from the server. Kudu sends one message per read
 * of AppsvcTunnelBuffer bytes (64 KiB by default); anything far beyond that
 * is a broken or hostile peer, not a bigger buffer. */
#define TN_RX_FRAME_MAX	(16u << 20)
#define TN_HS_SECS	20		/* connect + proxy + TLS + upgrade deadline */
#define TN_TUNNEL_PATH	"/AppServiceTunnel/Tunnel.ashx"

struct tn_config {
	char *host;		/* SCM host name (no port) */
	int port;		/* SCM port (443) */
	char *authorization;	/* full header value; wiped on free; under auth_mu once running */
	char *bind_addr;	/* local listen address; NULL: no listener (tn_engine_adopt only) */
	int bind_port;		/* 0: the kernel picks */
	char *instance;		/* ARRAffinity cookie value, or NULL */
	int target_port;	/* AppsvcTunnelPort, or 0 */
	int ping_secs;		/* client keep-alive */
	char *ca_file;		/* REQUESTS_CA_BUNDLE, or NULL: system store */
	int verify;		/* 0 only when the user turned it off */
	char *proxy;		/* "host:port" HTTP CONNECT proxy, or NULL; never credentials */
	char *proxy_auth;	/* Proxy-Authorization value for CONNECT, or NULL; wiped on free */
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
	int port;		/* bound local port (0 without a listener) */
	/* start/stop, which two Python threads may call at once: under life_mu */
	pthread_mutex_t life_mu;
	pthread_t thread;
	int thread_started;
	int stopped;		/* stop() was called: start() is refused */
	atomic_int stopping;	/* set by tn_engine_stop */
	atomic_int running;	/* service loop alive */
	struct tn_stats stats;
	uint64_t next_id;	/* service thread only */
	struct tn_events events;
	struct ssl_ctx_st *ssl_ctx;	/* TLS settings shared by every WebSocket */
	/* scratch, service thread only: nothing stays in them between calls */
	unsigned char *txbuf;	/* TN_WS_HDR_MAX + TN_FRAME_MAX: one outgoing frame */
	unsigned char *rxbuf;	/* TN_TLS_READ: one SSL_read */
	uint64_t mask_seed;	/* WebSocket mask keys */

	/* cfg.authorization may be replaced by tn_engine_set_authorization()
	 * from any thread: read and swapped under auth_mu */
	pthread_mutex_t auth_mu;
	atomic_int auth_bearer;	/* its scheme, for messages (no lock needed) */

	/* the listener, paused while the process is out of descriptors */
	struct lws *listen_wsi;
	lws_sorted_usec_list_t listen_sul;
	int listen_paused;
	lws_usec_t listen_told;	/* when the last "out of descriptors" event went out */

	struct tn_relay *check_relay;	/* service thread only: the check() handshake running */

	/* the one outstanding check() request, guarded by mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t check_gen;	/* bumped per request */
	int check_requested;	/* service thread should launch one */
	int check_done;		/* result below is for check_gen */
	struct tn_err check_err;
	int adopt_fd;		/* tn_engine_adopt: a connected socket to relay, or -1 */
};

/* Receive state of one WebSocket (tn_ws.c). */
struct tn_wsp {
	uint64_t remain;	/* payload bytes left in the current frame */
	uint8_t hdr[10];	/* header being collected (servers never mask) */
	uint8_t hlen, need;	/* need: header length expected, 0 in payload */
	uint8_t opcode, ctl_len;
	unsigned char ctl[125];	/* control frame payload */
};

/* Where the WebSocket's own connection is (tn_link.c). */
enum tn_phase {
	TN_PH_TCP,		/* non-blocking connect in flight */
	TN_PH_PROXY,		/* CONNECT sent, collecting the proxy's answer */
	TN_PH_TLS,		/* TLS handshake */
	TN_PH_UPGRADE,		/* upgrade request sent, collecting the 101 */
	TN_PH_OPEN,		/* relaying frames */
};

/* A relay: one accepted local socket and its WebSocket. Shared by both
 * wsi (their opaque user data); freed by whichever side is destroyed last. */
struct tn_relay {
	struct tn_engine *eng;
	struct lws *local;	/* raw adopted socket, NULL once destroyed */
	struct lws *ws;		/* the WebSocket's socket (raw file), NULL once destroyed */
	struct ssl_st *ssl;	/* our TLS on that socket, NULL until TN_PH_TLS */
	int ws_fd;
	enum tn_phase phase;
	struct addrinfo *ai, *ai_next;	/* addresses left to try while connecting */
	uint64_t id;
	uint64_t check_gen;	/* is_check: which request this answers */
	struct tn_ring up;	/* local -> ws */
	struct tn_ring down;	/* ws -> local */
	uint64_t bytes_up, bytes_down;
	unsigned is_check:1, ws_up:1, ws_gone:1, local_gone:1,
		 local_paused:1, ws_paused:1, reported:1, fail_counted:1,
		 rx_seen:1, rx_kick:1, ping_due:1, pong_due:1, peer_closed:1,
		 close_sent:1, hs_sent:1, in_wcb:1, rearm_due:1,
		 remote_end:1;	/* the server ended it (close frame, EOF, reset) */
	lws_sorted_usec_list_t rearm;	/* re-requests WRITEABLE (tn_link_want_write) */
	uint16_t idle_secs;	/* keep-alive: seconds without anything received */
	uint8_t pong_len;
	unsigned char pong[125];
	unsigned char close_code[2];	/* what our close frame says */
	lws_usec_t hs_started;	/* when the first connect began (handshake deadline) */
	char *hs_buf;		/* proxy or 101 answer being collected, then freed */
	size_t hs_len;
	char *ws_accept;	/* expected Sec-WebSocket-Accept, until the 101 */
	unsigned char *tx_pend;	/* masked bytes TLS has not taken yet; later frames queue behind */
	size_t tx_len, tx_off;
	struct tn_wsp wsp;
	char peer[64];
	struct tn_err err;	/* why the WebSocket failed, if it did */
};

/* tn_engine.c */
int tn_engine_create(struct tn_engine **out, struct tn_config *cfg, struct tn_err *err);
int tn_engine_start(struct tn_engine *eng, struct tn_err *err);
/* check() in three steps, so the caller can run signal handlers between
 * slices: post the request (its generation in *gen); wait for its answer
 * until deadline_ms (tn_time_now_ms) but at most slice_ms, returning 1
 * while there is none yet, else 0 or -1 with err (a time-out abandons it);
 * abandon it (its handshake is closed). */
int tn_engine_check_post(struct tn_engine *eng, uint64_t *gen, struct tn_err *err);
int tn_engine_check_wait(struct tn_engine *eng, uint64_t gen, int64_t deadline_ms, int slice_ms,
			 int timeout_ms, struct tn_err *err);
void tn_engine_check_abandon(struct tn_engine *eng, uint64_t gen);
/* New handshakes send value (taken over; the old one is wiped). Any thread. */
void tn_engine_set_authorization(struct tn_engine *eng, char *value);
/* Any thread, any number at once; idempotent. */
void tn_engine_stop(struct tn_engine *eng);
/* Relay an already-connected socket (the engine owns fd from here on, even on failure). */
int tn_engine_adopt(struct tn_engine *eng, int fd, struct tn_err *err);
void tn_engine_free(struct tn_engine *eng);
void tn_config_free(struct tn_config *cfg);
/* Wipe a credential string, then free it (NULL is fine). */
void tn_config_secret_free(char *s);

/* tn_listen.c */
int tn_listen_open(const char *addr, int port, int *fd_out, int *port_out, struct tn_err *err);
int tn_listen_accept(struct tn_engine *eng);
void tn_listen_stop(struct tn_engine *eng);
void tn_listen_relay_fd(struct tn_engine *eng, int fd, const char *peer);

/* tn_relay.c */
struct tn_relay *tn_relay_new(struct tn_engine *eng);
int tn_relay_connect(struct tn_relay *r);
int tn_relay_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      struct tn_relay *r, void *in, size_t len);
/* Both sides are gone (or never came): report and free. */
void tn_relay_finish(struct tn_relay *r);
/* check(): hand the outcome to the waiting thread, once. */
void tn_relay_report_check(struct tn_relay *r);
/* tn_link.c hands over: the WebSocket is open; received data payload;
 * the up ring drained below the low mark. */
void tn_relay_ws_opened(struct tn_relay *r);
int tn_relay_ws_payload(struct tn_relay *r, unsigned char *p, size_t n);
void tn_relay_up_drained(struct tn_relay *r);

/* tn_link.c: the WebSocket's connection (TCP, proxy, TLS, upgrade, frames) */
int tn_link_open(struct tn_relay *r);
int tn_link_callback(struct lws *wsi, enum lws_callback_reasons reason,
		     struct tn_relay *r);
/* Local data while the link is idle: frame and send it now. Returns bytes
 * taken (the rest goes to the up ring), or -1 when the link failed. */
ssize_t tn_link_send_direct(struct tn_relay *r, const unsigned char *p, size_t n);
/* The relay made room in the down ring: read again. */
void tn_link_resume(struct tn_relay *r);
/* Ask for RAW_WRITEABLE_FILE on the link (see tn_link.c for why not
 * lws_callback_on_writable directly). */
void tn_link_want_write(struct tn_relay *r);
/* Frees what the link holds (TLS, addresses, buffers); the fd is lws'. */
void tn_link_free(struct tn_relay *r);
/* tn_ws.c hands complete control frames here */
int tn_link_control(struct tn_relay *r, int opcode, const unsigned char *p, size_t n);

/* tn_conn.c: TCP connect (direct or to the proxy) and HTTP CONNECT */
int tn_conn_start(struct tn_relay *r);
int tn_conn_finish(struct tn_relay *r);
int tn_conn_proxy_send(struct tn_relay *r);
int tn_conn_proxy_rx(struct tn_relay *r);
int tn_conn_proxy_answer(struct tn_relay *r, const char *in, size_t len);

/* tn_tls.c */
int tn_tls_ctx_init(struct tn_engine *eng, struct tn_err *err);
void tn_tls_ctx_free(struct tn_engine *eng);
int tn_tls_start(struct tn_relay *r);
int tn_tls_handshake(struct tn_relay *r);
/* -1: the connection ended; r->err is set unless it was the server's
 * orderly end (close_notify, or EOF at a record boundary) */
ssize_t tn_tls_read(struct tn_relay *r, unsigned char *buf, size_t cap);
ssize_t tn_tls_write(struct tn_relay *r, const unsigned char *p, size_t n);
void tn_tls_free(struct tn_relay *r);
void tn_classify_http_status(struct tn_engine *eng, struct tn_relay *r, unsigned int status);

/* tn_ws.c */
void tn_ws_seed(struct tn_engine *eng);
int tn_ws_request(struct tn_relay *r, char *buf, size_t cap);
ssize_t tn_ws_handshake_rx(struct tn_relay *r, const unsigned char *in, size_t len);
/* Builds one masked frame in eng->txbuf from src (may be NULL when the
 * payload is already at txbuf + TN_WS_HDR_MAX); *out points at it. */
size_t tn_ws_frame(struct tn_engine *eng, int opcode, const unsigned char *src, size_t n,
		   unsigned char **out);
int tn_ws_parse(struct tn_relay *r, unsigned char *in, size_t len);

#define TN_WS_OP_BINARY	0x2
#define TN_WS_OP_CLOSE	0x8
#define TN_WS_OP_PING	0x9
#define TN_WS_OP_PONG	0xa

#endif
