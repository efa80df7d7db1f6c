/*
 * scm_ws.h - RFC 6455 framing for the server side of a tunnel: frames from
 * the client arrive masked and are unmasked while they are copied out;
 * frames to the client go unmasked.
 */
#ifndef SCM_WS_H
#define SCM_WS_H

#include <stddef.h>
#include <stdint.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xa

#define WS_HEADER_MAX 10	/* server frames carry no mask */
#define WS_CONTROL_MAX 125

enum ws_rx_event {
	WS_RX_MORE,		/* all input consumed; nothing to report */
	WS_RX_DATA,		/* *out_len payload bytes written to out */
	WS_RX_PING,		/* control frames: payload in rx->control */
	WS_RX_PONG,
	WS_RX_CLOSE,
	WS_RX_ERROR		/* protocol violation: rx->error says which */
};

struct ws_rx {
	unsigned char head[14];
	size_t head_len;
	unsigned opcode;
	int in_payload;
	uint64_t left;			/* payload bytes still to come */
	unsigned char mask[4];
	unsigned mask_pos;
	unsigned char control[WS_CONTROL_MAX];
	size_t control_len;
	const char *error;
};

/*
 * Consumes input from in[0..len) (*used says how much) until it has
 * something to report.  Data payload is unmasked into out, at most out_room
 * bytes per call.
 */
enum ws_rx_event ws_rx_step(struct ws_rx *rx, const unsigned char *in,
			    size_t len, size_t *used, unsigned char *out,
			    size_t out_room, size_t *out_len);

/* Writes a frame header for len payload bytes; returns its size. */
size_t ws_header(unsigned char *h, unsigned opcode, uint64_t len);

/* Sec-WebSocket-Accept for a client key (29 bytes incl. NUL); 0 on success. */
int ws_accept_key(const char *key, char out[29]);

#endif
