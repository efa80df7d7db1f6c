/*
 * tn_http.h - the header block of an HTTP/1.x answer as a server sends it:
 * collected across reads (at most TN_HS_MAX bytes, no NUL inside it) and
 * its status line read (RFC 7230 3.1.2). The upgrade's 101 (tn_ws.c) and
 * the proxy's answer to CONNECT (tn_conn.c) are both read with it, as the
 * portable engine reads both with codec.HeadCollector. Header-only, so
 * that each of those files still builds alone (tests/fuzz/).
 */
#ifndef TN_HTTP_H
#define TN_HTTP_H

#include <stdlib.h>
#include <string.h>

#include "tn_limits.h"

struct tn_http_head {
	char *buf;	/* TN_HS_MAX + 1 bytes while collecting, else NULL */
	size_t len;
};

enum tn_http_rc {
	TN_HTTP_MORE = 0,	/* no blank line yet: feed more */
	TN_HTTP_DONE = 1,	/* the block is in buf, NUL-terminated */
	TN_HTTP_NOMEM = -1,
	TN_HTTP_MALFORMED = -2,	/* a NUL inside the block */
	TN_HTTP_OVERSIZED = -3,	/* TN_HS_MAX bytes and no blank line */
};

/* Takes the next bytes of the answer. On TN_HTTP_DONE, *used is how many
 * bytes of `in` belonged to the block: the rest follows the answer (frames,
 * the tunnel), may hold any byte and is not held to the block's rules. */
static inline enum tn_http_rc tn_http_head_feed(struct tn_http_head *h, const void *in, size_t len,
						size_t *used)
{
	size_t old = h->len, take = len, from = old > 3 ? old - 3 : 0, block;
	const char *end;

	if (!h->buf && !(h->buf = malloc(TN_HS_MAX + 1)))
		return TN_HTTP_NOMEM;
	if (take > TN_HS_MAX - old)
		take = TN_HS_MAX - old;
	memcpy(h->buf + old, in, take);
	h->len = old + take;
	end = memmem(h->buf + from, h->len - from, "\r\n\r\n", 4);
	block = end ? (size_t)(end + 4 - h->buf) : h->len;
	/* a NUL would hide the block's end from the string functions */
	if (block > old && memchr(h->buf + old, '\0', block - old))
		return TN_HTTP_MALFORMED;
	h->buf[block] = '\0';
	if (!end)
		return h->len >= TN_HS_MAX ? TN_HTTP_OVERSIZED : TN_HTTP_MORE;
	*used = block - old;
	return TN_HTTP_DONE;
}

static inline void tn_http_head_free(struct tn_http_head *h)
{
	free(h->buf);
	h->buf = NULL;
	h->len = 0;
}

/* The status of the status line at s: "HTTP/1.0" or "HTTP/1.1", one space,
 * three digits, then a space or the line's end; -1 for anything else. */
static inline int tn_http_status(const char *s)
{
	int i, status = 0;

	if (strncmp(s, "HTTP/1.", 7) || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
		return -1;
	for (i = 9; i < 12; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		status = status * 10 + (s[i] - '0');
	}
	return s[12] == ' ' || s[12] == '\r' ? status : -1;
}

#endif
