/*
 * tn_limits.h - GENERATED from azext_webapp/engine_limits.json by
 * tools/gen_limits.py: edit the JSON, never this file. The sizes and time
 * limits both engines share; TN_LIMITS(X) lists them for the module's exports.
 */
#ifndef TN_LIMITS_H
#define TN_LIMITS_H

/* bytes buffered per direction, per connection, before the other side stops
 * reading */
#define TN_RING_CAP	262144
/* the largest frame payload sent to the server (data is cut into frames of
 * at most this) */
#define TN_FRAME_MAX	65536
/* the largest frame payload accepted from the server (Kudu sends one frame
 * per read of AppsvcTunnelBuffer, 64 KiB by default) */
#define TN_RX_FRAME_MAX	16777216
/* the longest header block accepted as the proxy's answer or the 101 */
#define TN_HS_MAX	8192
/* seconds for connect, proxy, TLS and upgrade together */
#define TN_HS_SECS	20
/* seconds to wait for the server's answer to our Close */
#define TN_CLOSE_WAIT_SECS	5
/* connection events queued for Python; any beyond are counted as dropped */
#define TN_EVENTS_MAX	4096
/* the largest answer body a probe (GetStatus, warm-up) reads */
#define TN_PROBE_BODY_MAX	1048576
/* one read of a local socket or of standard input */
#define TN_LOCAL_CHUNK	65536
/* decrypted bytes gathered per read of a busy WebSocket */
#define TN_TLS_READ	65536
/* seconds to wait for the rest of a refused upgrade's body (its Content-
 * Length, its last chunk, or the connection's end end it sooner) */
#define TN_REFUSAL_SECS	2
/* bytes of Text frames given to send_text() and not yet handed to their
 * connections; more is a resource error */
#define TN_TEXTS_MAX	262144
/* with hold: bytes of a local client kept until the server's first byte, to
 * send again when a held connection retries (a client that sent more is not
 * held) */
#define TN_HOLD_KEEP_MAX	65536
/* with hold: times one connection is held before it ends as it would have
 * without hold */
#define TN_HOLD_TIMES_MAX	3
/* with hold: milliseconds after the server's 101 within which its close,
 * before a byte, turns the connection away as a restarting container does;
 * a WebSocket that lasted longer ended for reasons of its own, and its
 * client's bytes are never sent again */
#define TN_HOLD_WINDOW_MS	2000

#define TN_LIMITS(X) \
	X(RING_CAP) \
	X(FRAME_MAX) \
	X(RX_FRAME_MAX) \
	X(HS_MAX) \
	X(HS_SECS) \
	X(CLOSE_WAIT_SECS) \
	X(EVENTS_MAX) \
	X(PROBE_BODY_MAX) \
	X(LOCAL_CHUNK) \
	X(TLS_READ) \
	X(REFUSAL_SECS) \
	X(TEXTS_MAX) \
	X(HOLD_KEEP_MAX) \
	X(HOLD_TIMES_MAX) \
	X(HOLD_WINDOW_MS)

#endif
