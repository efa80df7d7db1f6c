/*
 * tn_ws.c - the client side of RFC 6455 as a codec (see tn_ws.h): the
 * upgrade request, the 101 check, and frame building and parsing.
 *
 * Why not lws' own ws client role: in lws 4.1 it parses every received
 * byte through a per-byte state machine call (about 10 CPU-seconds per
 * GiB downloaded) and masks byte by byte on send. Here payload runs are
 * handed on whole and masking works a word at a time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "tn_ws.h"

#define TN_WS_GUID	"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* xorshift64*: mask keys only need to vary, TLS already hides the data */
static uint32_t tn_ws_rand32(struct tn_ws *ws)
{
	uint64_t x = ws->seed;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ws->seed = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

void tn_ws_init(struct tn_ws *ws, const char *host, uint64_t seed)
{
	memset(ws, 0, sizeof(*ws));
	ws->host = host;
	ws->need = 2;	/* expecting a frame header */
	if (!seed && getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)(uintptr_t)ws ^ 0x9E3779B97F4A7C15ULL;
	ws->seed = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

void tn_ws_free(struct tn_ws *ws)
{
	tn_http_head_free(&ws->ans);
	free(ws->body);
	ws->body = NULL;
	ws->body_len = 0;
}

/* accept = base64(sha1(key + GUID)), RFC 6455 section 4.2.2 */
static void tn_ws_accept_for(const char *key, char out[29])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char cat[64];
	size_t kl = strlen(key);

	memcpy(cat, key, kl);
	memcpy(cat + kl, TN_WS_GUID, sizeof(TN_WS_GUID) - 1);
	SHA1((const unsigned char *)cat, kl + sizeof(TN_WS_GUID) - 1, md);
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
	out[28] = '\0';
}

int tn_ws_request(struct tn_ws *ws, const struct tn_ws_req *q, char *buf, size_t cap)
{
	unsigned char nonce[16];
	char key[25], host[300], extra[400];
	int n, e = 0;
	size_t i;

	for (i = 0; i < sizeof(nonce); i += 4) {
		uint32_t v = tn_ws_rand32(ws);

		memcpy(nonce + i, &v, 4);
	}
	EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
	key[24] = '\0';
	tn_ws_accept_for(key, ws->accept);
	ws->port = q->port;

	if (q->port == 443)
		snprintf(host, sizeof(host), "%s", q->host);
	else
		snprintf(host, sizeof(host), "%s:%d", q->host, q->port);
	extra[0] = '\0';
	if (q->instance) {
		n = snprintf(extra, sizeof(extra), "Cookie: ARRAffinity=%s\r\n", q->instance);
		if (n < 0 || (size_t)n >= sizeof(extra))
			return -1;
		e = n;
	}
	if (q->target_port) {
		n = snprintf(extra + e, sizeof(extra) - (size_t)e, "AppsvcTunnelPort: %d\r\n",
			     q->target_port);
		if (n < 0 || (size_t)n >= sizeof(extra) - (size_t)e)
			return -1;
	}
	n = snprintf(buf, cap,
		     "GET %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Pragma: no-cache\r\n"
		     "Cache-Control: no-cache\r\n"
		     "Origin: %s\r\n"
		     "Sec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n"
		     "Authorization: %s\r\n"
		     "%s\r\n", q->path ? q->path : TN_TUNNEL_PATH, host, host, key, q->authorization,
		     extra);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

static int tn_ws_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* A header's value in the response block, or NULL: what follows the colon
 * to the end of the field, which runs on over folded lines (obs-fold: a
 * user agent reads them as one, RFC 7230 3.2.4), without the spaces, tabs
 * and folds around it. A fold inside a value stays in it (and no accept
 * matches), as does any other control character. */
static const char *tn_ws_header(const char *hs, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = strstr(hs, "\r\n");

	while (p && strncmp(p + 2, "\r\n", 2)) {	/* up to the blank line */
		const char *line = p + 2, *end = strstr(line, "\r\n");

		while (end && (end[2] == ' ' || end[2] == '\t'))
			end = strstr(end + 2, "\r\n");
		if (!end)
			return NULL;
		if ((size_t)(end - line) > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
			line += nl + 1;
			for (;;) {
				if (line < end && tn_ws_blank(*line))
					line++;
				else if (line + 2 < end && !strncmp(line, "\r\n", 2))
					line += 2;	/* a fold: a blank follows */
				else
					break;
			}
			*vlen = (size_t)(end - line);
			for (;;) {
				if (*vlen && tn_ws_blank(line[*vlen - 1]))
					(*vlen)--;
				else if (*vlen >= 2 && !strncmp(line + *vlen - 2, "\r\n", 2))
					*vlen -= 2;	/* a fold the blanks after it were */
				else
					break;
			}
			return line;
		}
		p = end;
	}
	return NULL;
}

/* The facts of a failure on this WebSocket. */
static struct tn_facts tn_ws_facts(const struct tn_ws *ws, enum tn_err_phase phase)
{
	return (struct tn_facts){ .host = ws->host, .port = ws->port, .phase = phase };
}

/* The server answered the upgrade with something other than 101: facts
 * only (what the user can do about it is said in Python), and what it said
 * in the body that came with the answer. */
static int tn_ws_refused(struct tn_ws *ws, unsigned status, const unsigned char *body, size_t len,
			 struct tn_err *err)
{
	struct tn_facts f = tn_ws_facts(ws, TN_P_UPGRADE);

	f.status = (int)status;
	tn_err_set(err, status == 401 || status == 403 ? TN_R_AUTH_REFUSED : TN_R_HTTP_STATUS, &f);
	if (err)
		tn_err_server_message(err, body, len);
	return -1;
}

/* The end of a chunked body: the last chunk (size 0) and no trailers. */
static int tn_ws_chunks_done(const struct tn_ws *ws)
{
	const unsigned char *b = ws->body;
	size_t n = ws->body_len;

	return (n == 5 && !memcmp(b, "0\r\n\r\n", 5)) ||
	       (n >= 7 && !memcmp(b + n - 7, "\r\n0\r\n\r\n", 7));
}

int tn_ws_body_more(const struct tn_ws *ws)
{
	return ws->body && ws->body_len < ws->body_want && !(ws->chunked && tn_ws_chunks_done(ws));
}

int tn_ws_body_rx(struct tn_ws *ws, const unsigned char *in, size_t len)
{
	size_t take;

	if (!tn_ws_body_more(ws))
		return 1;
	take = ws->body_want - ws->body_len;
	if (take > len)
		take = len;
	memcpy(ws->body + ws->body_len, in, take);
	ws->body_len += take;
	return !tn_ws_body_more(ws);
}

/* A chunked body's data, in place (never longer than the chunks): each
 * chunk's hex size line (extensions after ';' ignored), its bytes, CRLF;
 * it stops at the last chunk or at anything else. */
static size_t tn_ws_dechunk(unsigned char *b, size_t n)
{
	size_t in = 0, out = 0;

	while (in < n) {
		size_t size = 0, digits = 0;

		for (; in < n && digits < 8; in++, digits++) {
			int c = b[in], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
				c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

			if (d < 0)
				break;
			size = size * 16 + (size_t)d;
		}
		while (in < n && b[in] != '\n')	/* the rest of the size line */
			in++;
		if (!digits || !size || in++ >= n)
			break;
		if (size > n - in)
			size = n - in;
		memmove(b + out, b + in, size);
		out += size;
		in += size + 2;		/* and its CRLF */
	}
	return out;
}

void tn_ws_body_message(const struct tn_ws *ws, struct tn_err *err)
{
	unsigned char *copy;
	size_t n = ws->body_len;

	if (!ws->body || !n)
		return;
	copy = malloc(n);
	if (!copy)
		return;		/* the message of what came with the answer stays */
	memcpy(copy, ws->body, n);
	if (ws->chunked)
		n = tn_ws_dechunk(copy, n);
	tn_err_server_message(err, copy, n);
	free(copy);
}

/* Not 101: keep what follows of the body (`rest`, the bytes of this read
 * after the head) for the link to read on; the refusal is reported at
 * once, with the message of what came so far. */
static int tn_ws_refuse(struct tn_ws *ws, unsigned status, const unsigned char *rest, size_t n,
			struct tn_err *err)
{
	size_t vlen, i, want = 0;
	const char *v;

	ws->body_want = TN_CAP_BODY_SCAN;
	v = tn_ws_header(ws->ans.buf, "Content-Length", &vlen);
	for (i = 0; v && i < vlen && v[i] >= '0' && v[i] <= '9' && want <= TN_CAP_BODY_SCAN; i++)
		want = want * 10 + (size_t)(v[i] - '0');
	if (v && vlen && i == vlen && want < TN_CAP_BODY_SCAN)
		ws->body_want = want;
	v = tn_ws_header(ws->ans.buf, "Transfer-Encoding", &vlen);
	ws->chunked = v && vlen >= 7 && !strncasecmp(v + vlen - 7, "chunked", 7);
	ws->body = malloc(TN_CAP_BODY_SCAN);
	if (!ws->body)		/* the refusal is reported all the same */
		return tn_ws_refused(ws, status, rest, n, err);
	tn_ws_body_rx(ws, rest, n);
	tn_ws_refused(ws, status, rest, n, err);
	if (err)
		tn_ws_body_message(ws, err);
	return -1;
}

ssize_t tn_ws_handshake_rx(struct tn_ws *ws, const unsigned char *in, size_t len,
			   struct tn_err *err)
{
	struct tn_facts f = tn_ws_facts(ws, TN_P_UPGRADE);
	size_t take = 0, vlen;
	const char *v;
	int status;

	/* The read may go on past the header block into WebSocket frames
	 * (binary, NULs included): those are not the answer's. */
	switch (tn_http_head_feed(&ws->ans, in, len, &take)) {
	case TN_HTTP_MORE:
		return 0;
	case TN_HTTP_NOMEM:
		return tn_err_resource(err, ENOMEM, &f);
	case TN_HTTP_MALFORMED:
		return tn_err_set(err, TN_R_HTTP_MALFORMED, &f);
	case TN_HTTP_OVERSIZED:
		f.limit = TN_HS_MAX;
		return tn_err_set(err, TN_R_HTTP_TOO_LARGE, &f);
	case TN_HTTP_DONE:
		break;
	}
	status = tn_http_status(ws->ans.buf);
	if (status < 100)
		return tn_err_set(err, TN_R_HTTP_MALFORMED, &f);
	if (status != 101)	/* the rest of this read is the start of the body */
		return tn_ws_refuse(ws, (unsigned)status, in + take, len - take, err);
	v = tn_ws_header(ws->ans.buf, "Sec-WebSocket-Accept", &vlen);
	if (!v || vlen != 28 || memcmp(v, ws->accept, 28)) {
		f.status = 101;
		return tn_err_set(err, TN_R_HTTP_BAD_ACCEPT, &f);
	}
	tn_ws_free(ws);
	return (ssize_t)take;
}

/* dst = src XOR the 4-byte key starting at key phase `ph`, a word at a
 * time (dst may equal src). Byte-wise masking was a third of lws' upload cost. */
static void tn_ws_mask(unsigned char *dst, const unsigned char *src, size_t n,
		       const unsigned char key[4], unsigned ph)
{
	unsigned char k[8];
	uint64_t k64;
	size_t i;

	for (i = 0; i < 8; i++)
		k[i] = key[(ph + i) & 3];
	memcpy(&k64, k, 8);
	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, src + i, 8);
		w ^= k64;
		memcpy(dst + i, &w, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ k[i & 7];
}

size_t tn_ws_frame(struct tn_ws *ws, int opcode, unsigned char *payload,
		   const unsigned char *src, size_t n, unsigned char **out)
{
	unsigned char key[4];
	uint32_t m = tn_ws_rand32(ws);

	memcpy(key, &m, 4);
	return tn_ws_frame_key(opcode, payload, src, n, key, out);
}

size_t tn_ws_frame_key(int opcode, unsigned char *payload, const unsigned char *src, size_t n,
		       const unsigned char key[4], unsigned char **out)
{
	unsigned char hdr[TN_WS_HDR_MAX];
	size_t h = 0;

	hdr[h++] = (unsigned char)(0x80 | opcode);	/* FIN: we never fragment */
	if (n < 126) {
		hdr[h++] = (unsigned char)(0x80 | n);
	} else if (n < 65536) {
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (unsigned char)(n >> 8);
		hdr[h++] = (unsigned char)n;
	} else {
		int s;

		hdr[h++] = 0x80 | 127;
		for (s = 56; s >= 0; s -= 8)
			hdr[h++] = (unsigned char)((uint64_t)n >> s);
	}
	memcpy(hdr + h, key, 4);
	h += 4;
	/* mask while copying: the payload is touched once */
	tn_ws_mask(payload, src ? src : payload, n, key, 0);
	memcpy(payload - h, hdr, h);
	*out = payload - h;
	return h + n;
}

/* continuation, text, binary, close, ping, pong: the rest are reserved */
static int tn_ws_opcode_known(unsigned op)
{
	return op <= 2 || (op >= 8 && op <= 10);
}

/* The two first header bytes are in: check them, learn the header's length. */
static int tn_ws_header_start(struct tn_ws *ws, struct tn_err *err)
{
	unsigned l7 = ws->hdr[1] & 0x7f;
	struct tn_facts f = tn_ws_facts(ws, TN_P_FRAME);

	if (ws->hdr[0] & 0x70)
		return tn_err_set(err, TN_R_PROTOCOL_RESERVED_BITS, &f);
	/* RFC 6455 5.1: a client must close on a masked frame */
	if (ws->hdr[1] & 0x80)
		return tn_err_set(err, TN_R_PROTOCOL_MASKED, &f);
	if (!tn_ws_opcode_known(ws->hdr[0] & 0x0f)) {
		f.opcode = ws->hdr[0] & 0x0f;
		return tn_err_set(err, TN_R_PROTOCOL_OPCODE, &f);
	}
	ws->need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0));
	return 0;
}

/* The whole header is in: the frame's opcode and length. */
static int tn_ws_header_done(struct tn_ws *ws, struct tn_err *err)
{
	unsigned l7 = ws->hdr[1] & 0x7f, i;
	struct tn_facts f = tn_ws_facts(ws, TN_P_FRAME);
	uint64_t plen = l7;

	if (l7 == 126) {
		plen = ((uint64_t)ws->hdr[2] << 8) | ws->hdr[3];
	} else if (l7 == 127) {
		plen = 0;
		for (i = 0; i < 8; i++)
			plen = (plen << 8) | ws->hdr[2 + i];
	}
	ws->opcode = ws->hdr[0] & 0x0f;
	ws->remain = plen;
	ws->ctl_len = 0;
	if (ws->opcode >= 8 && (plen > sizeof(ws->ctl) || !(ws->hdr[0] & 0x80)))
		return tn_err_set(err, TN_R_PROTOCOL_CONTROL, &f);
	/* RFC 6455 5.4: continuations follow an unfinished message, and
	 * messages are not interleaved */
	if ((ws->opcode == 0 && !ws->fragmented) ||
	    (ws->opcode && ws->opcode < 8 && ws->fragmented))
		return tn_err_set(err, TN_R_PROTOCOL_FRAGMENT, &f);
	if (ws->opcode < 8)
		ws->fragmented = !(ws->hdr[0] & 0x80);
	if (plen > TN_RX_FRAME_MAX) {
		f.size = plen;
		f.limit = TN_RX_FRAME_MAX;
		return tn_err_set(err, TN_R_PROTOCOL_TOO_LARGE, &f);
	}
	ws->need = 0;
	ws->hlen = 0;
	return 0;
}

/* s[0..n) is UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF, nothing cut). */
static int tn_ws_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0, k, more;

	while (i < n) {
		uint32_t cp = s[i], min;

		if (cp < 0x80) {
			i++;
			continue;
		}
		if (cp < 0xc2 || cp > 0xf4)
			return 0;
		more = cp >= 0xf0 ? 3 : cp >= 0xe0 ? 2 : 1;
		min = more == 3 ? 0x10000 : more == 2 ? 0x800 : 0x80;
		cp &= 0x3fu >> more;
		if (n - i <= more)
			return 0;
		for (k = 1; k <= more; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += more + 1;
	}
	return 1;
}

/* A Close's payload: empty, or a code a peer may send (RFC 6455 7.4; 1012
 * to 1014 as IANA registered them) and a UTF-8 reason. Its code is echoed
 * back, so one that must never be on the wire is not taken. */
static int tn_ws_close_valid(const unsigned char *p, size_t n)
{
	unsigned code;

	if (!n)
		return 1;
	if (n < 2)
		return 0;
	code = (unsigned)p[0] << 8 | p[1];
	if (code < 1000 || (code >= 1004 && code <= 1006) || (code >= 1015 && code < 3000) ||
	    code >= 5000)
		return 0;
	return tn_ws_utf8(p + 2, n - 2);
}

/* A frame ended: a control frame is an event; expect the next header. */
static int tn_ws_frame_end(struct tn_ws *ws, struct tn_ws_msg *m, struct tn_err *err)
{
	int op = ws->opcode;

	ws->need = 2;
	ws->hlen = 0;
	if (op < 8)
		return TN_WS_MORE;
	m->p = ws->ctl;
	m->n = ws->ctl_len;
	if (op == TN_WS_OP_CLOSE) {
		if (!tn_ws_close_valid(ws->ctl, ws->ctl_len)) {
			struct tn_facts f = tn_ws_facts(ws, TN_P_FRAME);

			return tn_err_set(err, TN_R_PROTOCOL_CLOSE, &f);
		}
		ws->closed = 1;
		return TN_WS_CLOSE;
	}
	return op == TN_WS_OP_PING ? TN_WS_PING : TN_WS_PONG;
}

int tn_ws_next(struct tn_ws *ws, unsigned char **in, size_t *len, struct tn_ws_msg *m,
	       struct tn_err *err)
{
	while (*len && !ws->closed) {
		if (ws->need) {	/* collecting a header */
			ws->hdr[ws->hlen++] = **in;
			(*in)++;
			(*len)--;
			if (ws->hlen == 2 && tn_ws_header_start(ws, err))
				return -1;
			if (ws->hlen < ws->need)
				continue;
			if (tn_ws_header_done(ws, err))
				return -1;
		} else {
			size_t n = ws->remain < *len ? (size_t)ws->remain : *len;
			unsigned char *p = *in;

			*in += n;
			*len -= n;
			ws->remain -= n;
			if (ws->opcode < 8) {
				if (!ws->remain) {	/* the next header follows */
					ws->need = 2;
					ws->hlen = 0;
				}
				if (n) {
					m->p = p;
					m->n = n;
					return TN_WS_DATA;
				}
				continue;
			}
			memcpy(ws->ctl + ws->ctl_len, p, n);
			ws->ctl_len = (uint8_t)(ws->ctl_len + n);
		}
		if (!ws->need && !ws->remain) {	/* frame complete */
			int ev = tn_ws_frame_end(ws, m, err);

			if (ev != TN_WS_MORE)
				return ev;
		}
	}
	if (ws->closed) {	/* nothing after a close frame counts */
		*in += *len;
		*len = 0;
	}
	return TN_WS_MORE;
}
