/*
 * scm_webssh.c - /webssh/ on every site: Kudu's browser SSH, proxied to the
 * local web SSH service (sandbox/webssh/) on the connection's own thread.
 *
 * The service trusts whatever arrives with its token, so the checks happen
 * here: the site's own credentials (Basic/Bearer, as for the tunnel), or the
 * session cookie this module issues when they were given.  A browser resends
 * cached Basic credentials with page loads but not reliably with the
 * terminal's WebSocket, so the cookie is what carries the sign-in to it.
 * Secrets (Authorization, cookies) stay here; the service learns the site,
 * the instance and the loopback port of its container port 2222 from
 * X-Webssh-* headers that a client cannot supply.
 *
 * The request line goes out exactly as received (raw, not decoded), so the
 * caller hands over a copy of the head made before http_parse.  After the
 * heads, bytes pass through untouched both ways (a WebSocket included) on
 * two non-blocking sockets, each tried until it would block and only then
 * polled together with the relay's stop pipe, as in scm_relay.c.  Answers of
 * our own (400, 401, 404, 502, 504) go out through the same loop, so no wait
 * here outlives a shutdown.
 */
#include "scm.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define WEBSSH_PREFIX "/webssh"
#define WEBSSH_COOKIE "WebsshSession"
#define WEBSSH_CHALLENGE "WWW-Authenticate: Basic realm=\"site\"\r\n"
#define WEBSSH_CONTAINER_PORT 2222	/* Kudu's web SSH always uses it */
#define WEBSSH_IO (64 * 1024)
#define WEBSSH_RESPONSE_HEAD_MAX (16 * 1024)
#define WEBSSH_ADDED_MAX 2048		/* our headers, on either head */
#define WEBSSH_DOWN_CAP (WEBSSH_RESPONSE_HEAD_MAX + WEBSSH_ADDED_MAX + \
			 WEBSSH_IO)
#define WEBSSH_NAME_MAX 256
#define WEBSSH_MAC_HEX 64
#define WEBSSH_CONNECT_MS 5000
/* A first page load may wait while the service bundles its page. */
#define WEBSSH_HEAD_MS 60000
/* How long an ending proxy may take to hand the other side the rest. */
#define WEBSSH_FLUSH_MS 10000

static unsigned char webssh_key[32];
static atomic_size_t webssh_open;

struct webssh {
	struct scm_conn *c;
	int ufd;			/* the service; -1: none */
	int plain;			/* not an upgrade: one request only */
	char set_cookie[WEBSSH_NAME_MAX];	/* "" unless issued */

	unsigned char *up;		/* client -> service */
	size_t up_off, up_len, up_cap;
	unsigned char *down;		/* service (or our answer) -> client */
	size_t down_off, down_len;
	char *head;			/* the service's answer head so far */
	size_t head_len;

	short client_read_wait;		/* what SSL_read waits for; 0: none */
	short client_write_wait;
	unsigned ufd_read_wait:1;
	unsigned ufd_write_wait:1;
	unsigned in_head:1;		/* the service's head not passed yet */
	unsigned client_eof:1;		/* nothing more from the client */
	unsigned client_dead:1;		/* nothing more to it either */
	unsigned service_eof:1;		/* nothing more from the service */
	unsigned service_deaf:1;	/* it stopped taking the client's */
	unsigned stopping:1;		/* server shutdown */
	long long head_deadline, flush_deadline;
};

int
webssh_init(void)
{
	/* per process: a restart signs everyone out, as a new key should */
	if (RAND_bytes(webssh_key, sizeof(webssh_key)) == 1)
		return 0;
	fprintf(stderr, "scm-server: no random bytes for the web SSH session "
		"key\n");
	return -1;
}

size_t
webssh_open_count(void)
{
	return atomic_load(&webssh_open);
}

/* 1 for a decoded path that is the proxy's: /webssh or /webssh/... */
int
webssh_path(const char *path)
{
	size_t n = sizeof(WEBSSH_PREFIX) - 1;

	return !strncasecmp(path, WEBSSH_PREFIX, n) &&
	       (path[n] == '\0' || path[n] == '/');
}

/*
 * Whether the raw head (before http_parse decodes it) may be for the proxy,
 * so that only those requests pay for a copy.  A superset: webssh_path on
 * the decoded path decides.
 */
int
webssh_wants(const char *head)
{
	const char *t = memchr(head, ' ', strcspn(head, "\r\n"));
	size_t n;

	if (!t)
		return 0;
	t++;
	n = strcspn(t, " ?\r\n");
	return (n >= sizeof(WEBSSH_PREFIX) - 1 &&
		!strncasecmp(t, WEBSSH_PREFIX, sizeof(WEBSSH_PREFIX) - 1)) ||
	       memchr(t, '%', n) != NULL;
}

/* ------------------------------------------------------------------ cookies */

/*
 * The next cookie called name in *p (advanced past it): its value in
 * *val and *len.  0 when there is none left.
 */
static int
webssh_cookie_next(const char **p, const char *name, const char **val,
		   size_t *len)
{
	size_t nlen = strlen(name), n;
	const char *s = *p, *item;

	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == ';' || *s == ',')
			s++;
		item = s;
		n = strcspn(s, ";,");
		s += n;
		while (n && (item[n - 1] == ' ' || item[n - 1] == '\t'))
			n--;
		if (n > nlen && !strncmp(item, name, nlen) &&
		    item[nlen] == '=') {
			*val = item + nlen + 1;
			*len = n - nlen - 1;
			*p = s;
			return 1;
		}
	}
	*p = s;
	return 0;
}

/* The hex HMAC-SHA256 of site "\n" expiry; -1 if it cannot be made. */
static int
webssh_mac(const char *site, const char *expiry, char out[WEBSSH_MAC_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	char msg[WEBSSH_NAME_MAX + 32];
	unsigned mdlen = 0, i;
	int n;

	n = snprintf(msg, sizeof(msg), "%s\n%s", site, expiry);
	if (n < 0 || (size_t)n >= sizeof(msg) ||
	    !HMAC(EVP_sha256(), webssh_key, sizeof(webssh_key),
		  (const unsigned char *)msg, (size_t)n, md, &mdlen) ||
	    mdlen * 2 != WEBSSH_MAC_HEX)
		return -1;
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[WEBSSH_MAC_HEX] = '\0';
	return 0;
}

/* 1 when v is "<expiry>.<mac>" made by this process for site, unexpired. */
static int
webssh_session_valid(const char *site, const char *v, size_t len)
{
	char digits[19], mac[WEBSSH_MAC_HEX + 1];
	const char *dot = memchr(v, '.', len);
	size_t elen;

	if (!dot)
		return 0;
	elen = (size_t)(dot - v);
	/* 18 digits cannot overflow a long long */
	if (!elen || elen >= sizeof(digits) ||
	    len - elen - 1 != WEBSSH_MAC_HEX)
		return 0;
	memcpy(digits, v, elen);
	digits[elen] = '\0';
	if (strspn(digits, "0123456789") != elen ||
	    strtoll(digits, NULL, 10) <= (long long)time(NULL) ||
	    webssh_mac(site, digits, mac))
		return 0;
	return !CRYPTO_memcmp(mac, dot + 1, WEBSSH_MAC_HEX);
}

static int
webssh_session_ok(const char *site, const char *cookies)
{
	const char *p = cookies, *v;
	size_t len;

	/* several may come (paths, an old one): any valid one will do */
	while (webssh_cookie_next(&p, WEBSSH_COOKIE, &v, &len))
		if (webssh_session_valid(site, v, len))
			return 1;
	return 0;
}

static void
webssh_issue(struct webssh *w, const char *site, int lifetime)
{
	char digits[24], mac[WEBSSH_MAC_HEX + 1];

	snprintf(digits, sizeof(digits), "%lld",
		 (long long)time(NULL) + lifetime);
	if (webssh_mac(site, digits, mac)) {
		/* the request is authorized all the same; no session, though */
		scm_log(SCM_LOG_WARN, "webssh: cannot sign a session for %s\n",
			site);
		return;
	}
	snprintf(w->set_cookie, sizeof(w->set_cookie),
		 "Set-Cookie: " WEBSSH_COOKIE "=%s.%s; Path=" WEBSSH_PREFIX
		 "; Max-Age=%ld; Secure; HttpOnly; SameSite=Strict\r\n",
		 digits, mac, (long)lifetime);
}

/* ------------------------------------------------------------------ routing */

static int
webssh_hex(int ch)
{
	return isdigit(ch) ? ch - '0' : tolower(ch) - 'a' + 10;
}

/* The decoded query parameter "instance" of the raw request line, or "". */
static void
webssh_query_instance(const char *raw, char *out, size_t outlen)
{
	const char *t = strchr(raw, ' '), *q, *end, *amp, *eq;
	size_t o = 0;

	out[0] = '\0';
	if (!t)
		return;
	t++;
	end = t + strcspn(t, " \r\n");
	q = memchr(t, '?', (size_t)(end - t));
	for (q = q ? q + 1 : end; q < end; q = amp + 1) {
		amp = memchr(q, '&', (size_t)(end - q));
		if (!amp)
			amp = end;
		eq = memchr(q, '=', (size_t)(amp - q));
		if (!eq || eq - q != 8 || strncasecmp(q, "instance", 8))
			continue;
		for (q = eq + 1; q < amp && o + 1 < outlen; q++) {
			char ch = *q;

			if (ch == '+') {
				ch = ' ';
			} else if (ch == '%' && amp - q > 2 &&
				   isxdigit((unsigned char)q[1]) &&
				   isxdigit((unsigned char)q[2])) {
				ch = (char)(webssh_hex((unsigned char)q[1]) *
					    16 +
					    webssh_hex((unsigned char)q[2]));
				q += 2;
			}
			/* a NUL would cut the name short into another one */
			out[o++] = ch ? ch : '?';
		}
		out[o] = '\0';
		return;
	}
}

/* Appends to a NUL-terminated buffer, silently truncating. */
static void
webssh_append(char *buf, size_t len, const char *s)
{
	size_t used = strlen(buf);

	snprintf(buf + used, len - used, "%s", s);
}

/*
 * The instance: ?instance= (case-insensitive name), else ARRAffinity, else
 * the site's default, as the tunnel routes.  0: name and loopback port of
 * container port 2222 (0: none) set; -1: no such instance, body says so.
 */
static int
webssh_pick(const struct scm_site *site, const struct webssh_request *rq,
	    char *name, size_t namelen, int *port, char *body, size_t bodylen)
{
	char want[WEBSSH_NAME_MAX], affinity[WEBSSH_NAME_MAX];
	const struct scm_instance *inst = NULL;
	const char *p = rq->cookie, *v;
	size_t i, len = 0;

	webssh_query_instance(rq->raw, want, sizeof(want));
	affinity[0] = '\0';
	if (webssh_cookie_next(&p, "ARRAffinity", &v, &len))
		snprintf(affinity, sizeof(affinity), "%.*s",
			 (int)(len < sizeof(affinity) ? len :
			       sizeof(affinity) - 1), v);
	config_read_begin();
	if (want[0]) {
		for (i = 0; i < site->ninstances && !inst; i++)
			if (!strcasecmp(site->instances[i].name, want))
				inst = &site->instances[i];
	} else {
		inst = config_route(site, affinity[0] ? affinity : NULL);
	}
	if (inst) {
		snprintf(name, namelen, "%s", inst->name);
		*port = config_loopback_port(inst, WEBSSH_CONTAINER_PORT);
		if (*port < 0)
			*port = 0;
	} else {
		snprintf(body, bodylen, "No instance named %s; this app's "
			 "instances: ", want);
		for (i = 0; i < site->ninstances; i++) {
			if (i)
				webssh_append(body, bodylen, ", ");
			webssh_append(body, bodylen, site->instances[i].name);
		}
		webssh_append(body, bodylen, "\n");
	}
	config_read_end();
	return inst ? 0 : -1;
}

/* ------------------------------------------------------------------ heads */

/*
 * 0 when every line of the raw request head ends in CRLF and every header
 * is "name: value" with a plain token name.  Anything looser could hide a
 * header (an X-Webssh-Port, say) from the filter below that the service's
 * parser would still find.
 */
static int
webssh_check_head(const char *raw, size_t len)
{
	const char *p, *eol, *colon, *end = raw + len;
	size_t i;

	for (i = 0; i < len; i++)
		if ((raw[i] == '\r' && (i + 1 == len || raw[i + 1] != '\n')) ||
		    (raw[i] == '\n' && (!i || raw[i - 1] != '\r')))
			return -1;
	p = memmem(raw, len, "\r\n", 2);
	if (!p)
		return -1;
	for (p += 2; p < end; p = eol + 2) {
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			return -1;
		if (eol == p)
			return eol + 2 == end ? 0 : -1;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return -1;
		for (; p < colon; p++)
			if (*p <= ' ' || *p >= 127)
				return -1;	/* folding, spaces, controls */
	}
	return -1;
}

static int
webssh_named(const char *line, size_t n, const char *name)
{
	return n == strlen(name) && !strncasecmp(line, name, n);
}

/* Header lines of the client's that the service must not see. */
static int
webssh_drop_request(const char *line, size_t n, int plain)
{
	return webssh_named(line, n, "authorization") ||
	       webssh_named(line, n, "proxy-authorization") ||
	       webssh_named(line, n, "cookie") ||
	       webssh_named(line, n, "x-forwarded-proto") ||
	       (n >= 9 && !strncasecmp(line, "x-webssh-", 9)) ||
	       (plain && webssh_named(line, n, "connection"));
}

/* Header lines of the service's answer replaced for the client. */
static int
webssh_drop_response(const char *line, size_t n, int plain)
{
	return plain && webssh_named(line, n, "connection");
}

/*
 * Copies the header lines p..end (CRLF-terminated, the blank line excluded)
 * to o, but those drop() names; returns the end of what it wrote.
 */
static char *
webssh_copy_headers(char *o, const char *p, const char *end,
		    int (*drop)(const char *, size_t, int), int plain)
{
	const char *eol, *colon;
	size_t n;

	for (; p < end; p = eol + 2) {
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			eol = end;	/* not from a checked head: keep it */
		colon = memchr(p, ':', (size_t)(eol - p));
		n = colon ? (size_t)(colon - p) : (size_t)(eol - p);
		if (drop(p, n, plain))
			continue;
		memcpy(o, p, (size_t)(eol - p));
		o += eol - p;
		*o++ = '\r';
		*o++ = '\n';
	}
	return o;
}

/* The head for the service into up; -1 when our headers do not fit. */
static int
webssh_request_head(struct webssh *w, const struct webssh_request *rq,
		    const char *token, const char *instance, int port)
{
	const char *line_end = memmem(rq->raw, rq->raw_len, "\r\n", 2);
	char *o = (char *)w->up;
	int n;

	/* the request line as received: the service matches it raw */
	memcpy(o, rq->raw, (size_t)(line_end + 2 - rq->raw));
	o += line_end + 2 - rq->raw;
	o = webssh_copy_headers(o, line_end + 2, rq->raw + rq->raw_len - 2,
				webssh_drop_request, w->plain);
	n = snprintf(o, WEBSSH_ADDED_MAX, "X-Webssh-Token: %s\r\n"
		     "X-Webssh-Site: %s\r\nX-Webssh-Instance: %s\r\n"
		     "X-Webssh-Port: %d\r\nX-Forwarded-Proto: https\r\n%s\r\n",
		     token, w->c->site->name, instance, port,
		     w->plain ? "Connection: close\r\n" : "");
	if (n < 0 || n >= WEBSSH_ADDED_MAX)
		return -1;
	o += n;
	memcpy(o, rq->early, rq->early_len);
	w->up_len = (size_t)(o - (char *)w->up) + rq->early_len;
	return 0;
}

/*
 * The service's head is complete when it holds CRLF CRLF: interim 1xx
 * answers (100 Continue) go on as they are; the final one goes on with our
 * cookie after its status line and, for a plain request, our Connection.
 * 0: passed or need more; -1: not an HTTP answer.
 */
static int
webssh_response_head(struct webssh *w)
{
	const char *end, *eol;
	char *o;
	size_t len;
	int status;

	for (;;) {
		end = memmem(w->head, w->head_len, "\r\n\r\n", 4);
		if (!end)
			return w->head_len < WEBSSH_RESPONSE_HEAD_MAX ? 0 : -1;
		len = (size_t)(end + 4 - w->head);
		if (len < 16 || memcmp(w->head, "HTTP/1.", 7) ||
		    w->head[8] != ' ' || !isdigit((unsigned char)w->head[9]) ||
		    !isdigit((unsigned char)w->head[10]) ||
		    !isdigit((unsigned char)w->head[11]))
			return -1;
		status = atoi(w->head + 9);
		if (status >= 200 || status == 101)
			break;
		memcpy(w->down + w->down_len, w->head, len);
		w->down_len += len;
		w->head_len -= len;
		memmove(w->head, w->head + len, w->head_len);
	}
	o = (char *)w->down + w->down_len;
	/* the status line ends at the latest where the head does */
	for (eol = w->head; eol[0] != '\r' || eol[1] != '\n'; eol++)
		;
	memcpy(o, w->head, (size_t)(eol + 2 - w->head));
	o += eol + 2 - w->head;
	o += sprintf(o, "%s%s", w->set_cookie,
		     w->plain ? "Connection: close\r\n" : "");
	o = webssh_copy_headers(o, eol + 2, end + 2, webssh_drop_response,
				w->plain);
	memcpy(o, "\r\n", 2);
	o += 2;
	/* body bytes that came with the head */
	memcpy(o, w->head + len, w->head_len - len);
	o += w->head_len - len;
	w->down_len = (size_t)(o - (char *)w->down);
	w->in_head = 0;
	return 0;
}

/* Queues an answer of ours; the loop sends it, then ends. */
static void
webssh_answer(struct webssh *w, unsigned status, const char *reason,
	      const char *body)
{
	size_t room = WEBSSH_DOWN_CAP - w->down_len;
	int n;

	n = snprintf((char *)w->down + w->down_len, room,
		     "HTTP/1.1 %u %s\r\n%sContent-Type: text/plain; "
		     "charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     status, reason, status == 401 ? WEBSSH_CHALLENGE : "",
		     strlen(body), body);
	if (n > 0 && (size_t)n < room)
		w->down_len += (size_t)n;
	else
		scm_log(SCM_LOG_ERR, "webssh: no room for a %u answer\n",
			status);
	if (status >= 500)
		scm_log(SCM_LOG_NOTICE, "webssh: %s: %u %s", w->c->site->name,
			status, body);
	w->in_head = 0;
	w->service_eof = 1;	/* nothing follows */
	w->up_off = w->up_len = 0;
}

/* ------------------------------------------------------------------ relay */

static int
webssh_client_in(struct webssh *w)
{
	int progress = 0;
	ssize_t n;

	for (;;) {
		if (w->ufd < 0 || w->client_eof || w->client_read_wait ||
		    w->service_eof || w->service_deaf)
			return progress;
		if (w->up_off == w->up_len)
			w->up_off = w->up_len = 0;
		if (w->up_len == w->up_cap)
			return progress;
		n = tls_read_nb(w->c->ssl, w->up + w->up_len,
				w->up_cap - w->up_len, &w->client_read_wait);
		if (n == -1)
			return progress;
		progress = 1;
		if (n <= 0) {
			w->client_eof = 1;
			w->client_dead = n < 0;
			return progress;
		}
		w->up_len += (size_t)n;
	}
}

static int
webssh_service_out(struct webssh *w)
{
	ssize_t n;

	if (w->ufd < 0 || w->up_off == w->up_len || w->ufd_write_wait ||
	    w->service_deaf)
		return 0;
	n = send(w->ufd, w->up + w->up_off, w->up_len - w->up_off,
		 MSG_NOSIGNAL);
	if (n > 0) {
		w->up_off += (size_t)n;
		return 1;
	}
	if (n < 0 && errno == EINTR)
		return 1;
	if (n < 0 && errno == EAGAIN) {
		w->ufd_write_wait = 1;
		return 0;
	}
	/* it may still be answering (a refusal, say): keep reading it */
	w->service_deaf = 1;
	w->up_off = w->up_len = 0;
	return 1;
}

static int
webssh_service_in(struct webssh *w)
{
	unsigned char *buf;
	size_t room;
	ssize_t n;

	if (w->ufd < 0 || w->service_eof || w->ufd_read_wait ||
	    w->client_dead)
		return 0;
	if (w->in_head) {
		if (w->down_off != w->down_len)
			return 0;	/* a 1xx still on its way */
		w->down_off = w->down_len = 0;
		buf = (unsigned char *)w->head + w->head_len;
		room = WEBSSH_RESPONSE_HEAD_MAX - w->head_len;
	} else {
		if (w->down_off == w->down_len)
			w->down_off = w->down_len = 0;
		buf = w->down + w->down_len;
		room = WEBSSH_DOWN_CAP - w->down_len;
		if (!room)
			return 0;
	}
	n = recv(w->ufd, buf, room, 0);
	if (n < 0 && errno == EINTR)
		return 1;
	if (n < 0 && errno == EAGAIN) {
		w->ufd_read_wait = 1;
		return 0;
	}
	if (n <= 0) {
		if (w->in_head)
			webssh_answer(w, 502, "Bad Gateway", "The web SSH "
				      "service closed without an answer\n");
		w->service_eof = 1;
		return 1;
	}
	if (!w->in_head) {
		w->down_len += (size_t)n;
		return 1;
	}
	w->head_len += (size_t)n;
	if (webssh_response_head(w))
		webssh_answer(w, 502, "Bad Gateway", "The web SSH service "
			      "sent no valid HTTP answer\n");
	return 1;
}

static int
webssh_client_out(struct webssh *w)
{
	ssize_t n;

	if (w->client_dead || w->down_off == w->down_len ||
	    w->client_write_wait)
		return 0;
	n = tls_write_nb(w->c->ssl, w->down + w->down_off,
			 w->down_len - w->down_off, &w->client_write_wait);
	if (n == -1)
		return 0;
	if (n < 0) {
		w->client_dead = 1;
		return 1;
	}
	w->down_off += (size_t)n;
	return 1;
}

/* 1 when the proxy is over: either side ended and the other has the rest. */
static int
webssh_settle(struct webssh *w, long long now)
{
	if (w->in_head && w->ufd >= 0 && now >= w->head_deadline)
		webssh_answer(w, 504, "Gateway Timeout", "The web SSH service "
			      "did not answer in time\n");
	if ((w->client_eof || w->service_eof) && !w->flush_deadline)
		w->flush_deadline = now + WEBSSH_FLUSH_MS;
	if (w->stopping || w->client_dead)
		return 1;
	if (w->flush_deadline && now >= w->flush_deadline)
		return 1;
	if (w->client_eof && (w->up_off == w->up_len || w->service_deaf ||
			      w->service_eof))
		return 1;
	return w->service_eof && !w->in_head && w->down_off == w->down_len;
}

static int
webssh_timeout(const struct webssh *w, long long now)
{
	long long t = -1, d;

	if (w->in_head && w->ufd >= 0)
		t = w->head_deadline;
	if (w->flush_deadline && (t < 0 || w->flush_deadline < t))
		t = w->flush_deadline;
	if (t < 0)
		return -1;	/* an open terminal may idle for hours */
	d = t - now;
	return d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
}

/* One poll for whatever the sockets were found blocked on. */
static void
webssh_wait(struct webssh *w)
{
	struct pollfd p[3];
	short cev = (short)(w->client_read_wait | w->client_write_wait);
	short uev = (short)((w->ufd_read_wait ? POLLIN : 0) |
			    (w->ufd_write_wait ? POLLOUT : 0));

	p[0].fd = cev && !w->client_dead ? w->c->fd : -1;
	p[0].events = cev;
	p[1].fd = uev ? w->ufd : -1;
	p[1].events = uev;
	p[2].fd = stop_fd();
	p[2].events = POLLIN;
	p[0].revents = p[1].revents = p[2].revents = 0;
	if (poll(p, 3, webssh_timeout(w, scm_now_ms())) <= 0)
		return;
	if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL))
		w->client_read_wait = w->client_write_wait = 0;
	if (p[0].revents & w->client_read_wait)
		w->client_read_wait = 0;
	if (p[0].revents & w->client_write_wait)
		w->client_write_wait = 0;
	if (p[1].revents & (POLLIN | POLLERR | POLLHUP))
		w->ufd_read_wait = 0;
	if (p[1].revents & (POLLOUT | POLLERR | POLLHUP))
		w->ufd_write_wait = 0;
	if (p[2].revents & POLLIN)
		w->stopping = 1;
}

static void
webssh_loop(struct webssh *w)
{
	int progress;

	for (;;) {
		do {
			progress = webssh_client_in(w);
			progress |= webssh_service_out(w);
			progress |= webssh_service_in(w);
			progress |= webssh_client_out(w);
			if (webssh_settle(w, scm_now_ms()))
				return;
		} while (progress);
		webssh_wait(w);
	}
}

/* ------------------------------------------------------------------ entry */

/*
 * Proxies one /webssh request (rq->raw: the head as received) to its end;
 * the connection is over afterwards.  0 when the proxy is not configured:
 * the caller answers as for any other path.
 */
int
webssh_proxy(struct scm_conn *c, const struct webssh_request *rq)
{
	char token[SCM_WEBSSH_TOKEN_MAX + 1], instance[WEBSSH_NAME_MAX];
	char body[1024];
	struct webssh w;
	int service_port, lifetime = 0, authorized = 0, port = 0;

	config_read_begin();
	service_port = c->cfg->webssh_port;
	if (service_port) {
		snprintf(token, sizeof(token), "%s", c->cfg->webssh_token);
		lifetime = c->cfg->webssh_session_seconds;
		authorized = auth_check(c->site, rq->authorization);
	}
	config_read_end();
	if (!service_port)
		return 0;

	memset(&w, 0, sizeof(w));
	w.c = c;
	w.ufd = -1;
	w.plain = !rq->upgrade;
	w.up_cap = rq->raw_len + WEBSSH_ADDED_MAX + rq->early_len + WEBSSH_IO;
	/* one block for the three buffers */
	w.up = malloc(w.up_cap + WEBSSH_DOWN_CAP + WEBSSH_RESPONSE_HEAD_MAX);
	atomic_fetch_add(&webssh_open, 1);
	if (!w.up) {
		scm_log(SCM_LOG_ERR, "webssh: out of memory\n");
		goto out;
	}
	w.down = w.up + w.up_cap;
	w.head = (char *)w.down + WEBSSH_DOWN_CAP;
	if (webssh_check_head(rq->raw, rq->raw_len))
		webssh_answer(&w, 400, "Bad Request",
			      "Malformed request head\n");
	else if (!authorized && !webssh_session_ok(c->site->name, rq->cookie))
		webssh_answer(&w, 401, "Unauthorized", "Sign in with the "
			      "app's deployment credentials or a token\n");
	else if (webssh_pick(c->site, rq, instance, sizeof(instance), &port,
			     body, sizeof(body)))
		webssh_answer(&w, 404, "Not Found", body);
	else if ((w.ufd = probe_connect(service_port,
					WEBSSH_CONNECT_MS)) < 0)
		webssh_answer(&w, 502, "Bad Gateway",
			      "The web SSH service is not running\n");
	else if (webssh_request_head(&w, rq, token, instance, port))
		webssh_answer(&w, 500, "Internal Server Error",
			      "Names too long for the web SSH headers\n");
	else {
		if (authorized)
			webssh_issue(&w, c->site->name, lifetime);
		w.in_head = 1;
		w.head_deadline = scm_now_ms() + WEBSSH_HEAD_MS;
	}
	webssh_loop(&w);
out:
	if (w.ufd >= 0)
		close(w.ufd);
	free(w.up);
	atomic_fetch_sub(&webssh_open, 1);
	return 1;
}
