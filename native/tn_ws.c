/*
 * tn_ws.c - the client side of RFC 6455 over an lws raw TLS connection:
 * the upgrade request, the 101 check, and frame parsing and building.
 *
 * Why not lws' own ws client role: in lws 4.1 it parses every received
 * byte through a per-byte state machine call (about 10 CPU-seconds per
 * GiB downloaded) and masks byte by byte on send. Here payload runs are
 * handed on whole and masking works a word at a time. tn_link.c moves the
 * bytes (TCP, proxy, TLS); this file only knows the wire format.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "tn_engine.h"

#define TN_WS_GUID	"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* xorshift64*: mask keys only need to vary, TLS already hides the data */
static uint32_t tn_ws_rand32(struct tn_engine *eng)
{
	uint64_t x = eng->mask_seed;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	eng->mask_seed = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

void tn_ws_seed(struct tn_engine *eng)
{
	if (getrandom(&eng->mask_seed, sizeof(eng->mask_seed), 0) != sizeof(eng->mask_seed))
		eng->mask_seed = (uint64_t)(uintptr_t)eng ^ 0x9E3779B97F4A7C15ULL;
	if (!eng->mask_seed)
		eng->mask_seed = 0x9E3779B97F4A7C15ULL;
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

int tn_ws_request(struct tn_relay *r, char *buf, size_t cap)
{
	const struct tn_config *c = &r->eng->cfg;
	unsigned char nonce[16];
	char key[25], host[300], extra[400];
	int n, e = 0;
	size_t i;

	for (i = 0; i < sizeof(nonce); i += 4) {
		uint32_t v = tn_ws_rand32(r->eng);

		memcpy(nonce + i, &v, 4);
	}
	EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
	key[24] = '\0';
	r->ws_accept = malloc(29);
	if (!r->ws_accept)
		return -1;
	tn_ws_accept_for(key, r->ws_accept);

	if (c->port == 443)
		snprintf(host, sizeof(host), "%s", c->host);
	else
		snprintf(host, sizeof(host), "%s:%d", c->host, c->port);
	extra[0] = '\0';
	if (c->instance) {
		n = snprintf(extra, sizeof(extra), "Cookie: ARRAffinity=%s\r\n", c->instance);
		if (n < 0 || (size_t)n >= sizeof(extra))
			return -1;
		e = n;
	}
	if (c->target_port) {
		n = snprintf(extra + e, sizeof(extra) - (size_t)e, "AppsvcTunnelPort: %d\r\n",
			     c->target_port);
		if (n < 0 || (size_t)n >= sizeof(extra) - (size_t)e)
			return -1;
	}
	n = snprintf(buf, cap,
		     "GET " TN_TUNNEL_PATH " HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "Upgrade: websocket\r\n"
		     "Connection: Upgrade\r\n"
		     "Pragma: no-cache\r\n"
		     "Cache-Control: no-cache\r\n"
		     "Origin: %s\r\n"
		     "Sec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n"
		     "Authorization: %s\r\n"
		     "%s\r\n", host, host, key, c->authorization, extra);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

/* A header's value in the response block, or NULL. */
static const char *tn_ws_header(const char *hs, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = strstr(hs, "\r\n");

	while (p && p[2] != '\r') {
		const char *line = p + 2, *end = strstr(line, "\r\n");

		if (!end)
			return NULL;
		if ((size_t)(end - line) > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
			line += nl + 1;
			while (*line == ' ' || *line == '\t')
				line++;
			*vlen = (size_t)(end - line);
			while (*vlen && (line[*vlen - 1] == ' ' || line[*vlen - 1] == '\t'))
				(*vlen)--;
			return line;
		}
		p = end;
	}
	return NULL;
}

/*
 * Feeds handshake bytes. Returns -1 (r->err set) on a refusal or a bad
 * answer, 0 while the header block is incomplete, else the number of
 * bytes of `in` that belonged to it (the rest is WebSocket data).
 */
ssize_t tn_ws_handshake_rx(struct tn_relay *r, const unsigned char *in, size_t len)
{
	size_t take = len, old = r->hs_len, vlen, hdr_len;
	const char *end, *v;
	unsigned int status;

	if (!r->hs_buf) {
		r->hs_buf = malloc(TN_HS_MAX + 1);
		if (!r->hs_buf)
			return tn_err_set(&r->err, TN_E_INTERNAL, 0, "out of memory");
	}
	if (take > TN_HS_MAX - old)
		take = TN_HS_MAX - old;
	memcpy(r->hs_buf + old, in, take);
	r->hs_len = old + take;
	/* The read may go on past the header block into WebSocket frames
	 * (binary, NULs included): find the end first, by length, and hold
	 * only the header block to the no-NUL rule (a NUL would hide its end
	 * from the string functions below). */
	{
		size_t from = old > 3 ? old - 3 : 0;

		end = memmem(r->hs_buf + from, r->hs_len - from, "\r\n\r\n", 4);
	}
	hdr_len = end ? (size_t)(end + 4 - r->hs_buf) : r->hs_len;
	if (hdr_len > old && memchr(r->hs_buf + old, '\0', hdr_len - old))
		return tn_err_set(&r->err, TN_E_HTTP, 0, "%s sent a malformed HTTP answer",
				  r->eng->cfg.host);
	r->hs_buf[hdr_len] = '\0';
	if (!end) {
		if (r->hs_len >= TN_HS_MAX)
			return tn_err_set(&r->err, TN_E_HTTP, 0,
					  "%s sent an oversized HTTP answer", r->eng->cfg.host);
		return 0;
	}
	if (sscanf(r->hs_buf, "HTTP/1.%*1[01] %3u", &status) != 1)
		return tn_err_set(&r->err, TN_E_HTTP, 0, "%s sent a malformed HTTP answer",
				  r->eng->cfg.host);
	if (status != 101) {
		tn_classify_http_status(r->eng, r, status);
		return -1;
	}
	v = tn_ws_header(r->hs_buf, "Sec-WebSocket-Accept", &vlen);
	if (!v || vlen != 28 || memcmp(v, r->ws_accept, 28))
		return tn_err_set(&r->err, TN_E_HTTP, 101,
				  "%s answered the upgrade without a valid Sec-WebSocket-Accept",
				  r->eng->cfg.host);
	take = (size_t)(end + 4 - r->hs_buf) - old;
	free(r->hs_buf);
	r->hs_buf = NULL;
	r->hs_len = 0;
	free(r->ws_accept);
	r->ws_accept = NULL;
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

size_t tn_ws_frame(struct tn_engine *eng, int opcode, const unsigned char *src, size_t n,
		   unsigned char **out)
{
	unsigned char hdr[TN_WS_HDR_MAX], key[4], *payload = eng->txbuf + TN_WS_HDR_MAX;
	uint32_t m = tn_ws_rand32(eng);
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
	memcpy(key, &m, 4);
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

/*
 * Parses WebSocket bytes from the server: data payload runs go to
 * tn_relay_ws_payload() as they are (no copy); control frames are
 * collected and handed to tn_link_control(). Returns -1 to close, else 0.
 */
int tn_ws_parse(struct tn_relay *r, unsigned char *in, size_t len)
{
	struct tn_wsp *p = &r->wsp;

	while (len) {
		if (p->need) {	/* collecting a header */
			size_t want;

			p->hdr[p->hlen++] = *in++;
			len--;
			if (p->hlen == 2) {
				unsigned l7 = p->hdr[1] & 0x7f;

				if (p->hdr[0] & 0x70)
					return tn_err_set(&r->err, TN_E_PROTOCOL, 0,
							  "%s sent a frame with reserved bits set",
							  r->eng->cfg.host);
				/* RFC 6455 5.1: a client must close on a masked frame */
				if (p->hdr[1] & 0x80)
					return tn_err_set(&r->err, TN_E_PROTOCOL, 0,
							  "%s sent a masked frame (servers never mask)",
							  r->eng->cfg.host);
				if (!tn_ws_opcode_known(p->hdr[0] & 0x0f))
					return tn_err_set(&r->err, TN_E_PROTOCOL, 0,
							  "%s sent a frame with unknown opcode %u",
							  r->eng->cfg.host, p->hdr[0] & 0x0fu);
				want = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
				p->need = (uint8_t)want;
			}
			if (p->hlen < p->need)
				continue;
			/* header complete */
			{
				unsigned l7 = p->hdr[1] & 0x7f, i;
				uint64_t plen = l7;

				if (l7 == 126) {
					plen = ((uint64_t)p->hdr[2] << 8) | p->hdr[3];
				} else if (l7 == 127) {
					plen = 0;
					for (i = 0; i < 8; i++)
						plen = (plen << 8) | p->hdr[2 + i];
				}
				p->opcode = p->hdr[0] & 0x0f;
				p->remain = plen;
				p->ctl_len = 0;
				if (p->opcode >= 8 && (plen > sizeof(p->ctl) || !(p->hdr[0] & 0x80)))
					return tn_err_set(&r->err, TN_E_PROTOCOL, 0,
							  "%s sent an invalid control frame",
							  r->eng->cfg.host);
				if (plen > TN_RX_FRAME_MAX)
					return tn_err_set(&r->err, TN_E_PROTOCOL, 0,
							  "%s sent a frame of %llu bytes (at most %u accepted)",
							  r->eng->cfg.host, (unsigned long long)plen,
							  TN_RX_FRAME_MAX);
				p->need = 0;
				p->hlen = 0;
			}
		} else {
			size_t n = p->remain < len ? (size_t)p->remain : len;

			if (p->opcode >= 8) {
				memcpy(p->ctl + p->ctl_len, in, n);
				p->ctl_len = (uint8_t)(p->ctl_len + n);
			} else if (n && tn_relay_ws_payload(r, in, n)) {
				return -1;
			}
			in += n;
			len -= n;
			p->remain -= n;
		}
		if (!p->need && !p->remain) {	/* frame complete */
			if (p->opcode >= 8 && tn_link_control(r, p->opcode, p->ctl, p->ctl_len))
				return -1;
			if (r->peer_closed)
				return 0;	/* nothing after a close frame counts */
			p->need = 2;
			p->hlen = 0;
		}
	}
	return 0;
}
