/*
 * tn_ws.h - the client side of RFC 6455 as a pure codec: the upgrade
 * request, the server's answer to it, frames built (masked) and frames
 * read. Bytes in, frames and control events out; no sockets, no TLS, no
 * knowledge of who sends or receives them.
 */
#ifndef TN_WS_H
#define TN_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tn_err.h"
#include "tn_http.h"
#include "tn_limits.h"	/* TN_RX_FRAME_MAX */

#define TN_WS_HDR_MAX	14		/* longest client frame header */
#define TN_TUNNEL_PATH	"/AppServiceTunnel/Tunnel.ashx"

#define TN_WS_OP_TEXT	0x1
#define TN_WS_OP_BINARY	0x2
#define TN_WS_OP_CLOSE	0x8
#define TN_WS_OP_PING	0x9
#define TN_WS_OP_PONG	0xa

#define TN_WS_CLOSE_NORMAL	1000

struct tn_ws {
	const char *host;	/* for the facts of a failure; outlives the codec */
	int port;		/* the request's, likewise */
	uint64_t seed;		/* mask keys */
	/* the upgrade */
	char accept[29];	/* expected Sec-WebSocket-Accept */
	struct tn_http_head ans;	/* the answer being collected, then freed */
	/* a refused upgrade's body: up to TN_CAP_BODY_SCAN (tn_err.h) bytes */
	unsigned char *body;
	size_t body_len, body_want;
	int chunked;
	/* frames from the server */
	uint64_t remain;	/* payload bytes left in the current frame */
	uint8_t hdr[10];	/* header being collected (servers never mask) */
	uint8_t hlen, need;	/* need: header length expected, 0 in payload */
	uint8_t opcode, ctl_len;
	unsigned char ctl[125];	/* control frame payload */
	uint8_t fragmented;	/* inside a message sent in fragments */
	int closed;		/* a Close frame arrived: nothing after it counts */
};

struct tn_ws_req {
	const char *host;
	int port;
	const char *path;		/* with its query; NULL: TN_TUNNEL_PATH */
	const char *authorization;	/* the header value */
	const char *instance;		/* ARRAffinity, or NULL */
	int target_port;		/* AppsvcTunnelPort, or 0 */
};

/* What tn_ws_next found. */
enum tn_ws_event {
	TN_WS_MORE = 0,		/* every byte given is used: feed more */
	TN_WS_DATA,		/* a run of data payload */
	TN_WS_PING,		/* control frames, whole */
	TN_WS_PONG,
	TN_WS_CLOSE,
};

struct tn_ws_msg {
	unsigned char *p;	/* into the bytes given (data) or the codec (control) */
	size_t n;
};

/* seed 0: a random one. */
void tn_ws_init(struct tn_ws *ws, const char *host, uint64_t seed);
void tn_ws_free(struct tn_ws *ws);
/* The upgrade request into buf; its length, or -1 when it does not fit. */
int tn_ws_request(struct tn_ws *ws, const struct tn_ws_req *q, char *buf, size_t cap);
/* The server's answer to it, in any split: 0 while incomplete, the bytes of
 * `in` that belonged to it once it said 101 (the rest are frames), or -1
 * with err (a refusal: auth_refused or http_status with the status and the
 * server_message of the body that came with it, or an http_* reason). A
 * refusal's body is kept, as much of it as came so far. */
ssize_t tn_ws_handshake_rx(struct tn_ws *ws, const unsigned char *in, size_t len,
			   struct tn_err *err);
/* After a refusal: 1 while more of its body is expected (up to its
 * Content-Length, the end of its chunks or TN_CAP_BODY_SCAN bytes). */
int tn_ws_body_more(const struct tn_ws *ws);
/* More of it; 1 once nothing more is expected. */
int tn_ws_body_rx(struct tn_ws *ws, const unsigned char *in, size_t len);
/* err's server_message from the whole body kept (its chunks joined). */
void tn_ws_body_message(const struct tn_ws *ws, struct tn_err *err);
/* One masked frame: the payload is at `payload` (src NULL) or copied there
 * from src; TN_WS_HDR_MAX bytes before `payload` take the header. *out is
 * where the frame starts; returns its length. */
size_t tn_ws_frame(struct tn_ws *ws, int opcode, unsigned char *payload,
		   const unsigned char *src, size_t n, unsigned char **out);
/* The same with the mask key given (the codec's test vectors). */
size_t tn_ws_frame_key(int opcode, unsigned char *payload, const unsigned char *src, size_t n,
		       const unsigned char key[4], unsigned char **out);
/* The next thing in the server's bytes at *in (advanced past what it
 * used): an event, or -1 with err when the server broke RFC 6455 (bad
 * header bits or lengths, fragments out of order, an invalid Close). */
int tn_ws_next(struct tn_ws *ws, unsigned char **in, size_t *len, struct tn_ws_msg *m,
	       struct tn_err *err);

#endif
