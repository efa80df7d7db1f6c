/*
 * scm_proxy.c - one request forwarded to a local service on the
 * connection's own thread: what /webssh/ (scm_webssh.c) and /exec/
 * (scm_exec.c) have in common once they have decided where it goes.
 *
 * The request line goes out exactly as received (raw, not decoded), so the
 * caller hands over a copy of the head made before http_parse; the headers
 * go without the client's secrets (Authorization, Proxy-Authorization,
 * Cookie) and without anything that could pose as ours (X-Forwarded-Proto,
 * X-Webssh-*, X-Exec-*), plus the lines the caller adds.  After the heads,
 * bytes pass through untouched both ways (a WebSocket included) on two
 * non-blocking sockets, each tried until it would block and only then
 * polled together with the relay's stop pipe, as in scm_relay.c.  Answers
 * of our own (a refusal, 502, 504) go out through the same loop, so no wait
 * here outlives a shutdown; each is one write, head and body together.
 */
#include "scm.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROXY_CHALLENGE "WWW-Authenticate: Basic realm=\"site\"\r\n"
#define PROXY_IO (64 * 1024)
#define PROXY_RESPONSE_HEAD_MAX (16 * 1024)
#define PROXY_DOWN_CAP (PROXY_RESPONSE_HEAD_MAX + PROXY_ADDED_MAX + PROXY_IO)
#define PROXY_CONNECT_MS 5000
/* A first page load may wait while the web SSH service bundles its page. */
#define PROXY_HEAD_MS 60000
/* How long an ending proxy may take to hand the other side the rest. */
#define PROXY_FLUSH_MS 10000

static atomic_size_t proxy_open_now;

struct proxy {
	struct scm_conn *c;
	const struct proxy_request *rq;
	enum proxy_style style;
	const char *what;		/* "web SSH", "exec": for messages */
	int ufd;			/* the service; -1: none */
	int plain;			/* not an upgrade: one request only */
	char extra[PROXY_NAME_MAX];	/* a header line for the answer */

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

size_t
proxy_open_count(void)
{
	return atomic_load(&proxy_open_now);
}

/*
 * Whether the raw head (before http_parse decodes it) may be for a proxy,
 * so that only those requests pay for a copy.  A superset: the proxies'
 * own path checks on the decoded path decide.
 */
int
proxy_wants(const char *head)
{
	static const char *const prefixes[] = { "/webssh", "/exec" };
	const char *t = memchr(head, ' ', strcspn(head, "\r\n"));
	size_t n, i, plen;

	if (!t)
		return 0;
	t++;
	n = strcspn(t, " ?\r\n");
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		plen = strlen(prefixes[i]);
		if (n >= plen && !strncasecmp(t, prefixes[i], plen))
			return 1;
	}
	return memchr(t, '%', n) != NULL;
}

/* 1 for a decoded path that is prefix itself or below it (any case). */
int
proxy_path(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	return !strncasecmp(path, prefix, n) &&
	       (path[n] == '\0' || path[n] == '/');
}

/*
 * The next cookie called name in *p (advanced past it): its value in
 * *val and *len.  0 when there is none left.
 */
int
proxy_cookie_next(const char **p, const char *name, const char **val,
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

/* The first ARRAffinity value of the cookies into out, or "". */
void
proxy_affinity(const char *cookies, char *out, size_t outlen)
{
	const char *p = cookies, *v;
	size_t len;

	out[0] = '\0';
	if (proxy_cookie_next(&p, "ARRAffinity", &v, &len))
		snprintf(out, outlen, "%.*s",
			 (int)(len < outlen ? len : outlen - 1), v);
}

/* ------------------------------------------------------------------ heads */

/*
 * 0 when every line of the raw request head ends in CRLF and every header
 * is "name: value" with a plain token name.  Anything looser could hide a
 * header (an X-Webssh-Port, say) from the filter below that the service's
 * parser would still find.
 */
static int
proxy_check_head(const char *raw, size_t len)
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
proxy_named(const char *line, size_t n, const char *name)
{
	return n == strlen(name) && !strncasecmp(line, name, n);
}

/* Header lines of the client's that a service must not see. */
static int
proxy_drop_request(const char *line, size_t n, int plain)
{
	return proxy_named(line, n, "authorization") ||
	       proxy_named(line, n, "proxy-authorization") ||
	       proxy_named(line, n, "cookie") ||
	       proxy_named(line, n, "x-forwarded-proto") ||
	       (n >= 9 && !strncasecmp(line, "x-webssh-", 9)) ||
	       (n >= 7 && !strncasecmp(line, "x-exec-", 7)) ||
	       (plain && proxy_named(line, n, "connection"));
}

/* Header lines of the service's answer replaced for the client. */
static int
proxy_drop_response(const char *line, size_t n, int plain)
{
	return plain && proxy_named(line, n, "connection");
}

/*
 * Copies the header lines p..end (CRLF-terminated, the blank line excluded)
 * to o, but those drop() names; returns the end of what it wrote.
 */
static char *
proxy_copy_headers(char *o, const char *p, const char *end,
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

/*
 * The head for the service into up, with the header lines of fmt added;
 * -1 when they do not fit.
 */
static int
proxy_request_head(struct proxy *p, const char *fmt, va_list ap)
{
	const struct proxy_request *rq = p->rq;
	const char *line_end = memmem(rq->raw, rq->raw_len, "\r\n", 2);
	char *o = (char *)p->up;
	int n, m;

	/* the request line as received: the service matches it raw */
	memcpy(o, rq->raw, (size_t)(line_end + 2 - rq->raw));
	o += line_end + 2 - rq->raw;
	o = proxy_copy_headers(o, line_end + 2, rq->raw + rq->raw_len - 2,
			       proxy_drop_request, p->plain);
	n = vsnprintf(o, PROXY_ADDED_MAX, fmt, ap);
	if (n < 0 || n >= PROXY_ADDED_MAX)
		return -1;
	m = snprintf(o + n, PROXY_ADDED_MAX - (size_t)n,
		     "X-Forwarded-Proto: https\r\n%s\r\n",
		     p->plain ? "Connection: close\r\n" : "");
	if (m < 0 || m >= PROXY_ADDED_MAX - n)
		return -1;
	o += n + m;
	memcpy(o, rq->early, rq->early_len);
	p->up_len = (size_t)(o - (char *)p->up) + rq->early_len;
	return 0;
}

/*
 * The service's head is complete when it holds CRLF CRLF: interim 1xx
 * answers (100 Continue) go on as they are; the final one goes on with the
 * caller's extra line after its status line and, for a plain request, our
 * Connection.  0: passed or need more; -1: not an HTTP answer.
 */
static int
proxy_response_head(struct proxy *p)
{
	const char *end, *eol;
	char *o;
	size_t len;
	int status;

	for (;;) {
		end = memmem(p->head, p->head_len, "\r\n\r\n", 4);
		if (!end)
			return p->head_len < PROXY_RESPONSE_HEAD_MAX ? 0 : -1;
		len = (size_t)(end + 4 - p->head);
		if (len < 16 || memcmp(p->head, "HTTP/1.", 7) ||
		    p->head[8] != ' ' || !isdigit((unsigned char)p->head[9]) ||
		    !isdigit((unsigned char)p->head[10]) ||
		    !isdigit((unsigned char)p->head[11]))
			return -1;
		status = atoi(p->head + 9);
		if (status >= 200 || status == 101)
			break;
		memcpy(p->down + p->down_len, p->head, len);
		p->down_len += len;
		p->head_len -= len;
		memmove(p->head, p->head + len, p->head_len);
	}
	o = (char *)p->down + p->down_len;
	/* the status line ends at the latest where the head does */
	for (eol = p->head; eol[0] != '\r' || eol[1] != '\n'; eol++)
		;
	memcpy(o, p->head, (size_t)(eol + 2 - p->head));
	o += eol + 2 - p->head;
	o += sprintf(o, "%s%s", p->extra,
		     p->plain ? "Connection: close\r\n" : "");
	o = proxy_copy_headers(o, eol + 2, end + 2, proxy_drop_response,
			       p->plain);
	memcpy(o, "\r\n", 2);
	o += 2;
	/* body bytes that came with the head */
	memcpy(o, p->head + len, p->head_len - len);
	o += p->head_len - len;
	p->down_len = (size_t)(o - (char *)p->down);
	p->in_head = 0;
	return 0;
}

/* ------------------------------------------------------------------ answers */

void
proxy_answer_body(struct proxy *p, unsigned status, const char *ctype,
		  const char *body)
{
	size_t room = PROXY_DOWN_CAP - p->down_len;
	int n;

	n = snprintf((char *)p->down + p->down_len, room,
		     "HTTP/1.1 %u %s\r\n%sContent-Type: %s\r\n"
		     "X-Content-Type-Options: nosniff\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     status, scm_reason(status),
		     status == 401 ? PROXY_CHALLENGE : "", ctype,
		     strlen(body), body);
	if (n > 0 && (size_t)n < room)
		p->down_len += (size_t)n;
	else
		scm_log(SCM_LOG_ERR, "%s proxy: no room for a %u answer\n",
			p->what, status);
	if (status >= 500)
		scm_log(SCM_LOG_NOTICE, "%s proxy: %s: %u %.*s\n", p->what,
			p->c->site->name, status,
			(int)strcspn(body, "\n"), body);
	p->in_head = 0;
	p->service_eof = 1;	/* nothing follows */
	p->up_off = p->up_len = 0;
}

/* A JSON string's contents: quotes, backslashes and controls escaped. */
static void
proxy_json_escape(char *out, size_t outlen, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20) {
			o += (size_t)snprintf(out + o, outlen - o, "\\u%04x",
					      ch);
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
}

/* Queues an answer of ours in the proxy's style; the loop sends it. */
void
proxy_answer(struct proxy *p, unsigned status, const char *message)
{
	char body[PROXY_MESSAGE_MAX + 32], text[PROXY_MESSAGE_MAX];

	if (p->style == PROXY_JSON) {
		proxy_json_escape(text, sizeof(text), message);
		snprintf(body, sizeof(body), "{\"Message\":\"%s\"}", text);
		proxy_answer_body(p, status, "application/json; charset=utf-8",
				  body);
	} else {
		snprintf(body, sizeof(body), "%s\n", message);
		proxy_answer_body(p, status, "text/plain; charset=utf-8",
				  body);
	}
}

/* ------------------------------------------------------------------ relay */

static int
proxy_client_in(struct proxy *p)
{
	int progress = 0;
	ssize_t n;

	for (;;) {
		if (p->ufd < 0 || p->client_eof || p->client_read_wait ||
		    p->service_eof || p->service_deaf)
			return progress;
		if (p->up_off == p->up_len)
			p->up_off = p->up_len = 0;
		if (p->up_len == p->up_cap)
			return progress;
		n = tls_read_nb(p->c->ssl, p->up + p->up_len,
				p->up_cap - p->up_len, &p->client_read_wait);
		if (n == -1)
			return progress;
		progress = 1;
		if (n <= 0) {
			p->client_eof = 1;
			p->client_dead = n < 0;
			return progress;
		}
		p->up_len += (size_t)n;
	}
}

static int
proxy_service_out(struct proxy *p)
{
	ssize_t n;

	if (p->ufd < 0 || p->up_off == p->up_len || p->ufd_write_wait ||
	    p->service_deaf)
		return 0;
	n = send(p->ufd, p->up + p->up_off, p->up_len - p->up_off,
		 MSG_NOSIGNAL);
	if (n > 0) {
		p->up_off += (size_t)n;
		return 1;
	}
	if (n < 0 && errno == EINTR)
		return 1;
	if (n < 0 && errno == EAGAIN) {
		p->ufd_write_wait = 1;
		return 0;
	}
	/* it may still be answering (a refusal, say): keep reading it */
	p->service_deaf = 1;
	p->up_off = p->up_len = 0;
	return 1;
}

static int
proxy_service_in(struct proxy *p)
{
	char message[128];
	unsigned char *buf;
	size_t room;
	ssize_t n;

	if (p->ufd < 0 || p->service_eof || p->ufd_read_wait ||
	    p->client_dead)
		return 0;
	if (p->in_head) {
		if (p->down_off != p->down_len)
			return 0;	/* a 1xx still on its way */
		p->down_off = p->down_len = 0;
		buf = (unsigned char *)p->head + p->head_len;
		room = PROXY_RESPONSE_HEAD_MAX - p->head_len;
	} else {
		if (p->down_off == p->down_len)
			p->down_off = p->down_len = 0;
		buf = p->down + p->down_len;
		room = PROXY_DOWN_CAP - p->down_len;
		if (!room)
			return 0;
	}
	n = recv(p->ufd, buf, room, 0);
	if (n < 0 && errno == EINTR)
		return 1;
	if (n < 0 && errno == EAGAIN) {
		p->ufd_read_wait = 1;
		return 0;
	}
	if (n <= 0) {
		if (p->in_head) {
			snprintf(message, sizeof(message), "The %s service "
				 "closed without an answer", p->what);
			proxy_answer(p, 502, message);
		}
		p->service_eof = 1;
		return 1;
	}
	if (!p->in_head) {
		p->down_len += (size_t)n;
		return 1;
	}
	p->head_len += (size_t)n;
	if (proxy_response_head(p)) {
		snprintf(message, sizeof(message), "The %s service sent no "
			 "valid HTTP answer", p->what);
		proxy_answer(p, 502, message);
	}
	return 1;
}

static int
proxy_client_out(struct proxy *p)
{
	ssize_t n;

	if (p->client_dead || p->down_off == p->down_len ||
	    p->client_write_wait)
		return 0;
	n = tls_write_nb(p->c->ssl, p->down + p->down_off,
			 p->down_len - p->down_off, &p->client_write_wait);
	if (n == -1)
		return 0;
	if (n < 0) {
		p->client_dead = 1;
		return 1;
	}
	p->down_off += (size_t)n;
	return 1;
}

/* 1 when the proxy is over: either side ended and the other has the rest. */
static int
proxy_settle(struct proxy *p, long long now)
{
	char message[128];

	if (p->in_head && p->ufd >= 0 && now >= p->head_deadline) {
		snprintf(message, sizeof(message), "The %s service did not "
			 "answer in time", p->what);
		proxy_answer(p, 504, message);
	}
	if ((p->client_eof || p->service_eof) && !p->flush_deadline)
		p->flush_deadline = now + PROXY_FLUSH_MS;
	if (p->stopping || p->client_dead)
		return 1;
	if (p->flush_deadline && now >= p->flush_deadline)
		return 1;
	if (p->client_eof && (p->up_off == p->up_len || p->service_deaf ||
			      p->service_eof))
		return 1;
	return p->service_eof && !p->in_head && p->down_off == p->down_len;
}

static int
proxy_timeout(const struct proxy *p, long long now)
{
	long long t = -1, d;

	if (p->in_head && p->ufd >= 0)
		t = p->head_deadline;
	if (p->flush_deadline && (t < 0 || p->flush_deadline < t))
		t = p->flush_deadline;
	if (t < 0)
		return -1;	/* an open terminal may idle for hours */
	d = t - now;
	return d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
}

/* One poll for whatever the sockets were found blocked on. */
static void
proxy_wait(struct proxy *p)
{
	struct pollfd fds[3];
	short cev = (short)(p->client_read_wait | p->client_write_wait);
	short uev = (short)((p->ufd_read_wait ? POLLIN : 0) |
			    (p->ufd_write_wait ? POLLOUT : 0));

	fds[0].fd = cev && !p->client_dead ? p->c->fd : -1;
	fds[0].events = cev;
	fds[1].fd = uev ? p->ufd : -1;
	fds[1].events = uev;
	fds[2].fd = stop_fd();
	fds[2].events = POLLIN;
	fds[0].revents = fds[1].revents = fds[2].revents = 0;
	if (poll(fds, 3, proxy_timeout(p, scm_now_ms())) <= 0)
		return;
	if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL))
		p->client_read_wait = p->client_write_wait = 0;
	if (fds[0].revents & p->client_read_wait)
		p->client_read_wait = 0;
	if (fds[0].revents & p->client_write_wait)
		p->client_write_wait = 0;
	if (fds[1].revents & (POLLIN | POLLERR | POLLHUP))
		p->ufd_read_wait = 0;
	if (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))
		p->ufd_write_wait = 0;
	if (fds[2].revents & POLLIN)
		p->stopping = 1;
}

static void
proxy_loop(struct proxy *p)
{
	int progress;

	for (;;) {
		do {
			progress = proxy_client_in(p);
			progress |= proxy_service_out(p);
			progress |= proxy_service_in(p);
			progress |= proxy_client_out(p);
			if (proxy_settle(p, scm_now_ms()))
				return;
		} while (progress);
		proxy_wait(p);
	}
}

/* ------------------------------------------------------------------ entry */

struct proxy *
proxy_open(struct scm_conn *c, const struct proxy_request *rq,
	   enum proxy_style style, const char *what)
{
	struct proxy *p = calloc(1, sizeof(*p));

	if (!p) {
		scm_log(SCM_LOG_ERR, "%s proxy: out of memory\n", what);
		return NULL;
	}
	p->c = c;
	p->rq = rq;
	p->style = style;
	p->what = what;
	p->ufd = -1;
	p->plain = !rq->upgrade;
	p->up_cap = rq->raw_len + PROXY_ADDED_MAX + rq->early_len + PROXY_IO;
	/* one block for the three buffers */
	p->up = malloc(p->up_cap + PROXY_DOWN_CAP + PROXY_RESPONSE_HEAD_MAX);
	if (!p->up) {
		scm_log(SCM_LOG_ERR, "%s proxy: out of memory\n", what);
		free(p);
		return NULL;
	}
	p->down = p->up + p->up_cap;
	p->head = (char *)p->down + PROXY_DOWN_CAP;
	atomic_fetch_add(&proxy_open_now, 1);
	if (proxy_check_head(rq->raw, rq->raw_len))
		proxy_answer(p, 400, "Malformed request head");
	return p;
}

/* 1 when nothing has been answered yet: the caller may go on deciding. */
int
proxy_undecided(const struct proxy *p)
{
	return !p->service_eof;
}

/*
 * Connects to the service on port and queues the request for it with the
 * header lines of fmt added; extra: a header line for its final answer.
 */
void
proxy_forward(struct proxy *p, int port, const char *extra,
	      const char *fmt, ...)
{
	char message[128];
	va_list ap;
	int bad;

	snprintf(p->extra, sizeof(p->extra), "%s", extra);
	p->ufd = probe_connect(port, PROXY_CONNECT_MS);
	if (p->ufd < 0) {
		snprintf(message, sizeof(message), "The %s service is not "
			 "running", p->what);
		proxy_answer(p, 502, message);
		return;
	}
	va_start(ap, fmt);
	bad = proxy_request_head(p, fmt, ap);
	va_end(ap);
	if (bad) {
		proxy_answer(p, 500, "Names too long for the proxy's headers");
	} else {
		p->in_head = 1;
		p->head_deadline = scm_now_ms() + PROXY_HEAD_MS;
	}
}

void
proxy_finish(struct proxy *p)
{
	proxy_loop(p);
	if (p->ufd >= 0)
		close(p->ufd);
	free(p->up);
	free(p);
	atomic_fetch_sub(&proxy_open_now, 1);
}
