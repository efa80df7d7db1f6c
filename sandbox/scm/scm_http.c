/*
 * scm_http.c - one connection's thread: the TLS handshake, then HTTP/1.1
 * requests (keep-alive) until the client leaves or upgrades to the tunnel.
 *
 * Plain requests (PROTOCOL.md section 2): GetStatus v1/v2, 400 for anything
 * else on the tunnel path, /api/settings, /api/sitecontainers (section 9),
 * 404 elsewhere, 401 with a Basic challenge without accepted credentials.
 * Before any of them, scm_walls.c may refuse the request (403: access
 * restrictions, a token without the publish right), and SSH turned off
 * closes port 2222 to GetStatus and the upgrade.  The upgrade is refused the same
 * way (or with the site's "refuse" fault) or accepted with 101, routed
 * (ARRAffinity, AppsvcTunnelPort, AppsvcTunnelBuffer) and handed to
 * scm_relay.c on this same thread.  /webssh and /exec requests, plain or
 * upgrade, go to scm_webssh.c and scm_exec.c when the config names their
 * local services.  While the site restarts (unavailable_until), every
 * request gets the front end's 503 instead.
 */
#include "scm.h"
#include "scm_ws.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_HEAD_MAX (32 * 1024)	/* JWT bearer tokens are long */
#define HTTP_BODY_DISCARD_MAX (1024 * 1024)
#define HTTP_HANDSHAKE_MS 10000
#define HTTP_IDLE_MS 60000		/* between keep-alive requests */
#define HTTP_REQUEST_MS 10000		/* to finish a started request */
#define HTTP_PROBE_TIMEOUT_MS 2000
#define HTTP_UNREACHABLE "Unable to connect to WebApp"
#define HTTP_BODY_MAX 256
#define HTTP_CONTAINERS "/api/sitecontainers"
#define HTTP_CONTAINERS_MAX (16 * 1024)
/* the refusal of the tunnel to the SSH port of a site with SSH off */
#define HTTP_SSH_OFF_BODY "{\"Message\":\"" SCM_SSH_DISABLED "\"}"
/* What the front end answers while the site restarts (inferred: HTTP.sys's
 * page for a site without a worker; PROTOCOL.md section 2, "Restarts") */
#define HTTP_UNAVAILABLE_PAGE \
	"<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"" \
	"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n" \
	"<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n" \
	"<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; " \
	"charset=us-ascii\"></HEAD>\r\n<BODY><h2>Service Unavailable</h2>\r\n" \
	"<hr><p>HTTP Error 503. The service is unavailable.</p>\r\n" \
	"</BODY></HTML>\r\n"

struct http_request {
	char *method, *path, *query;	/* point into the head buffer */
	int http10;
	const char *authorization, *upgrade, *connection, *ws_key,
		   *ws_version, *tunnel_port, *tunnel_buffer, *transfer;
	char cookie[4096];		/* every Cookie header, joined */
	long long content_length;
};

/* 0 sent; -1 the connection is unusable. */
static int
http_respond(struct scm_conn *c, unsigned status, const char *ctype,
	     const char *body, int challenge, int closing)
{
	size_t blen = body ? strlen(body) : 0, cap = 1024 + blen;
	char *buf = malloc(cap);
	int n, rc = -1;

	if (!buf)
		return -1;
	n = snprintf(buf, cap,
		     "HTTP/1.1 %u %s\r\n%s%s%sContent-Length: %zu\r\n%s%s\r\n%s",
		     status, scm_reason(status),
		     ctype ? "Content-Type: " : "", ctype ? ctype : "",
		     ctype ? "\r\n" : "", blen,
		     challenge ? "WWW-Authenticate: Basic realm=\"site\"\r\n"
			       : "",
		     closing ? "Connection: close\r\n" : "",
		     body ? body : "");
	if (n > 0 && (size_t)n < cap)
		rc = tls_write_all(c->ssl, c->fd, buf, (size_t)n,
				   HTTP_REQUEST_MS);
	free(buf);
	return rc;
}

static int
http_authorized(const struct scm_conn *c, const struct http_request *rq)
{
	int ok;

	config_read_begin();
	ok = auth_check(c->site, rq->authorization);
	config_read_end();
	return ok;
}

/* The site restarts behind the front end: every request gets its 503. */
static int
http_site_unavailable(const struct scm_conn *c)
{
	int down;

	config_read_begin();
	down = config_unavailable(c->site);
	config_read_end();
	return down;
}

static int
http_is_tunnel_path(const char *path)
{
	return !strncasecmp(path, SCM_TUNNEL_PATH, strlen(SCM_TUNNEL_PATH));
}

/* Decodes %XX in place: the path and the query are matched decoded. */
static void
http_unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '%' && isxdigit((unsigned char)s[1]) &&
		    isxdigit((unsigned char)s[2])) {
			char hex[3] = { s[1], s[2], 0 };

			*o++ = (char)strtol(hex, NULL, 16);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Integer value of a header, or dflt when absent or malformed. */
static long
http_int(const char *v, long lo, long hi, long dflt)
{
	char *end;
	long n;

	if (!v)
		return dflt;
	n = strtol(v, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	if (end == v || *end || n < lo || n > hi)
		return dflt;
	return n;
}

/* ARRAffinity value from the cookies into out, or "" */
static void
http_affinity(const char *cookie, char *out, size_t outlen)
{
	static const char name[] = "ARRAffinity=";
	const char *p;
	size_t n;

	out[0] = '\0';
	for (p = cookie; *p; ) {
		while (*p == ' ' || *p == ';' || *p == ',')
			p++;
		if (!strncmp(p, name, sizeof(name) - 1)) {
			p += sizeof(name) - 1;
			n = strcspn(p, ";, ");
			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, p, n);
			out[n] = '\0';
			return;
		}
		p += strcspn(p, ";,");
	}
}

/* Under config_read_begin. */
static void
http_route(const struct scm_site *site, const struct http_request *rq,
	   struct scm_route *route)
{
	const struct scm_instance *inst;
	char affinity[256];

	http_affinity(rq->cookie, affinity, sizeof(affinity));
	inst = config_route(site, affinity[0] ? affinity : NULL);
	route->container_port = (int)http_int(rq->tunnel_port, 1, 65535,
					      site->default_port);
	route->loopback_port = config_loopback_port(inst,
						    route->container_port);
	route->read_size = (size_t)http_int(rq->tunnel_buffer, 1,
					    SCM_MAX_READ, SCM_DEFAULT_READ);
}

static int
http_get_status(struct scm_conn *c, const struct http_request *rq, int v2,
		int closing)
{
	struct scm_route route;
	char body[HTTP_BODY_MAX], state[32];
	const char *why;
	int ok, ssh_off;

	config_read_begin();
	http_route(c->site, rq, &route);
	snprintf(state, sizeof(state), "%s", config_state(c->site));
	config_read_end();
	ssh_off = walls_ssh_off(c->site, route.container_port);
	ok = !ssh_off && route.loopback_port > 0 &&
	     probe_tcp(route.loopback_port, HTTP_PROBE_TIMEOUT_MS);
	why = ssh_off ? SCM_SSH_DISABLED : HTTP_UNREACHABLE;
	if (v2)
		snprintf(body, sizeof(body), "{\"port\":%d,\"state\":\"%s\","
			 "\"canReachPort\":%s,\"msg\":\"%s\"}",
			 route.container_port, state, ok ? "true" : "false",
			 ok ? "" : why);
	else if (ok)
		snprintf(body, sizeof(body), "SUCCESS:%d",
			 route.container_port);
	else
		snprintf(body, sizeof(body), "FAILURE:%d:%s",
			 route.container_port, why);
	return http_respond(c, 200, v2 ? "application/json; charset=utf-8"
				       : "text/plain; charset=utf-8",
			    body, 0, closing);
}

/* GET /api/sitecontainers[/NAME]: the site's containers and their state
 * (sidecars; docs/PROTOCOL.md section 9), 404 for a site without them. */
static int
http_site_containers(struct scm_conn *c, const char *rest, int closing)
{
	char *body = malloc(HTTP_CONTAINERS_MAX);
	int found, rc;

	if (!body)
		return -1;
	if (*rest == '/')
		rest++;
	config_read_begin();
	found = !config_site_container(c->site, rest, body,
				       HTTP_CONTAINERS_MAX);
	config_read_end();
	rc = found ? http_respond(c, 200, "application/json; charset=utf-8",
				  body, 0, closing)
		   : http_respond(c, 404, NULL, NULL, 0, closing);
	free(body);
	return rc;
}

static int
http_plain(struct scm_conn *c, const struct http_request *rq, int closing)
{
	if (!http_authorized(c, rq))
		return http_respond(c, 401, NULL, NULL, 1, closing);
	if (http_is_tunnel_path(rq->path)) {
		if (rq->query && strcasestr(rq->query, "getstatus"))
			return http_get_status(c, rq,
					       strcasestr(rq->query,
							  "getstatusapiver=2")
					       != NULL, closing);
		return http_respond(c, 400, NULL, NULL, 0, closing);
	}
	if (!strcasecmp(rq->path, "/api/settings"))
		return http_respond(c, 200, "application/json; charset=utf-8",
				    "{}", 0, closing);
	if (!strncasecmp(rq->path, HTTP_CONTAINERS, strlen(HTTP_CONTAINERS)))
		return http_site_containers(c, rq->path +
					    strlen(HTTP_CONTAINERS), closing);
	return http_respond(c, 404, NULL, NULL, 0, closing);
}

/* Refuses (and returns) or runs the tunnel to its end. */
static void
http_upgrade(struct scm_conn *c, const struct http_request *rq,
	     const unsigned char *early, size_t early_len)
{
	struct scm_route route;
	struct scm_fault fault;
	char accept[29], resp[256];
	int n;

	if (strcmp(rq->method, "GET") || !rq->ws_key ||
	    !rq->ws_version || strcmp(rq->ws_version, "13") ||
	    ws_accept_key(rq->ws_key, accept)) {
		http_respond(c, 400, NULL, NULL, 0, 1);
		return;
	}
	if (!http_authorized(c, rq)) {
		http_respond(c, 401, NULL, NULL, 1, 1);
		return;
	}
	if (!http_is_tunnel_path(rq->path)) {
		http_respond(c, 404, NULL, NULL, 0, 1);
		return;
	}
	config_read_begin();
	fault = c->site->fault;
	http_route(c->site, rq, &route);
	config_read_end();
	if (fault.kind == SCM_FAULT_REFUSE) {
		http_respond(c, (unsigned)fault.value, NULL, NULL,
			     fault.value == 401, 1);
		return;
	}
	if (walls_ssh_off(c->site, route.container_port)) {
		http_respond(c, 403, "application/json; charset=utf-8",
			     HTTP_SSH_OFF_BODY, 0, 1);
		return;
	}
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		     accept);
	if (tls_write_all(c->ssl, c->fd, resp, (size_t)n, HTTP_REQUEST_MS))
		return;
	relay_run(c, &route, early, early_len);
}

static char *
http_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

/* Parses the head (NUL-terminated, without the final CRLF CRLF) in place. */
static int
http_parse(char *head, struct http_request *rq)
{
	char *line, *next, *colon, *name, *value, *version, *q;
	size_t used;

	memset(rq, 0, sizeof(*rq));
	next = strstr(head, "\r\n");
	if (next) {
		*next = '\0';
		next += 2;
	}
	rq->method = head;
	rq->path = strchr(head, ' ');
	if (!rq->path)
		return -1;
	*rq->path++ = '\0';
	version = strchr(rq->path, ' ');
	if (!version)
		return -1;
	*version++ = '\0';
	if (strncmp(version, "HTTP/1.", 7) || rq->path[0] != '/')
		return -1;
	rq->http10 = !strcmp(version, "HTTP/1.0");
	q = strchr(rq->path, '?');
	if (q) {
		*q++ = '\0';
		rq->query = q;
		http_unescape(rq->query);
	}
	http_unescape(rq->path);
	for (line = next; line && *line; line = next) {
		next = strstr(line, "\r\n");
		if (next) {
			*next = '\0';
			next += 2;
		}
		colon = strchr(line, ':');
		if (!colon || colon == line)
			return -1;
		*colon = '\0';
		name = line;
		value = http_trim(colon + 1);
		if (!strcasecmp(name, "authorization"))
			rq->authorization = value;
		else if (!strcasecmp(name, "upgrade"))
			rq->upgrade = value;
		else if (!strcasecmp(name, "connection"))
			rq->connection = value;
		else if (!strcasecmp(name, "sec-websocket-key"))
			rq->ws_key = value;
		else if (!strcasecmp(name, "sec-websocket-version"))
			rq->ws_version = value;
		else if (!strcasecmp(name, "appsvctunnelport"))
			rq->tunnel_port = value;
		else if (!strcasecmp(name, "appsvctunnelbuffer"))
			rq->tunnel_buffer = value;
		else if (!strcasecmp(name, "transfer-encoding"))
			rq->transfer = value;
		else if (!strcasecmp(name, "content-length"))
			rq->content_length = http_int(value, 0, 1L << 40, -1);
		else if (!strcasecmp(name, "cookie")) {
			used = strlen(rq->cookie);
			snprintf(rq->cookie + used, sizeof(rq->cookie) - used,
				 "%s%s", used ? "; " : "", value);
		}
	}
	return 0;
}

/* Reads and drops a request body; 0 done. */
static int
http_discard(struct scm_conn *c, unsigned char *buf, size_t cap,
	     size_t *have, long long length)
{
	ssize_t n;
	size_t take;

	while (length > 0) {
		if (!*have) {
			n = tls_read(c->ssl, c->fd, buf, cap, HTTP_REQUEST_MS);
			if (n <= 0)
				return -1;
			*have = (size_t)n;
		}
		take = (long long)*have < length ? *have : (size_t)length;
		memmove(buf, buf + take, *have - take);
		*have -= take;
		length -= (long long)take;
	}
	return 0;
}

/*
 * A /webssh or /exec request goes to scm_webssh.c or scm_exec.c with the
 * head as received (raw holds it); 1 when one of them took the connection.
 */
static int
http_proxied(struct scm_conn *c, const struct http_request *rq,
	     const char *raw, size_t head_len, const unsigned char *buf,
	     size_t have)
{
	struct proxy_request p;

	if (!raw)
		return 0;
	p.raw = raw;
	p.raw_len = head_len;
	p.authorization = rq->authorization;
	p.cookie = rq->cookie;
	p.upgrade = rq->upgrade && !strcasecmp(rq->upgrade, "websocket");
	p.early = buf + head_len;
	p.early_len = have - head_len;
	if (webssh_path(rq->path))
		return webssh_proxy(c, &p);
	if (exec_path(rq->path))
		return exec_proxy(c, &p);
	return 0;
}

static void
http_serve(struct scm_conn *c, unsigned char *buf)
{
	struct http_request rq;
	size_t have = 0, head_len;
	char *end, *raw;
	ssize_t n;
	int closing, bad, proxied;

	for (;;) {
		/* read until a complete head is buffered; what follows it
		 * (a body, early WebSocket frames) may hold any byte */
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have >= HTTP_HEAD_MAX) {
				http_respond(c, 431, NULL, NULL, 0, 1);
				return;
			}
			n = tls_read(c->ssl, c->fd, buf + have,
				     HTTP_HEAD_MAX - have,
				     have ? HTTP_REQUEST_MS : HTTP_IDLE_MS);
			if (n <= 0)
				return;
			have += (size_t)n;
		}
		buf[have] = '\0';
		head_len = (size_t)(end - (char *)buf) + 4;
		if (memchr(buf, '\0', head_len)) {
			http_respond(c, 400, NULL, NULL, 0, 1);
			return;
		}
		/* a proxy forwards the request line undecoded */
		raw = NULL;
		if (proxy_wants((char *)buf) &&
		    !(raw = strndup((char *)buf, head_len))) {
			http_respond(c, 500, NULL, NULL, 0, 1);
			return;
		}
		*end = '\0';
		bad = http_parse((char *)buf, &rq);
		if (!bad && walls_front(c, rq.authorization)) {
			free(raw);
			return;
		}
		if (!bad && http_site_unavailable(c)) {
			free(raw);
			http_respond(c, 503, "text/html; charset=us-ascii",
				     HTTP_UNAVAILABLE_PAGE, 0, 1);
			return;
		}
		proxied = !bad && http_proxied(c, &rq, raw, head_len, buf, have);
		free(raw);
		if (bad) {
			http_respond(c, 400, NULL, NULL, 0, 1);
			return;
		}
		if (proxied)
			return;
		if (rq.upgrade && !strcasecmp(rq.upgrade, "websocket")) {
			http_upgrade(c, &rq, buf + head_len, have - head_len);
			return;
		}
		if (rq.transfer || rq.content_length < 0 ||
		    rq.content_length > HTTP_BODY_DISCARD_MAX) {
			http_respond(c, rq.transfer ? 501 : 413, NULL, NULL, 0,
				     1);
			return;
		}
		closing = rq.http10 ||
			  (rq.connection && strcasestr(rq.connection, "close"));
		if (http_plain(c, &rq, closing) || closing)
			return;
		have -= head_len;
		memmove(buf, buf + head_len, have);
		if (http_discard(c, buf, HTTP_HEAD_MAX, &have,
				 rq.content_length))
			return;
	}
}

void *
http_thread(void *arg)
{
	struct scm_conn *c = arg;
	unsigned char *buf = malloc(HTTP_HEAD_MAX + 1);

	c->ssl = buf ? tls_accept(c->site->tls, c->fd, HTTP_HANDSHAKE_MS)
		     : NULL;
	if (c->ssl)
		http_serve(c, buf);
	free(buf);
	tls_close(c->ssl, c->fd, !c->abort);
	free(c);
	return NULL;
}
