/*
 * tn_conn.c - the TCP side of a WebSocket: resolve, connect non-blocking
 * (to the SCM host, or to the HTTPS proxy), and the proxy's HTTP CONNECT.
 *
 * DNS is a blocking getaddrinfo() on the service thread, as lws did it.
 * Every address is tried in turn: "localhost" gives ::1 first, and the
 * server may listen on 127.0.0.1 only.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netdb.h>

#include "tn_conn.h"

/* "host:port" or "[v6]:port" -> its parts. The proxy string never holds
 * credentials (those are cfg.proxy_auth), so it may appear in messages. */
static void tn_conn_proxy_split(const char *proxy, char *host, size_t hcap, char *port,
				size_t pcap)
{
	const char *hp = proxy, *colon;

	colon = strrchr(hp, ':');
	if (hp[0] == '[') {	/* [v6]:port */
		const char *rb = strchr(hp, ']');

		snprintf(host, hcap, "%.*s", rb ? (int)(rb - hp - 1) : 0, hp + 1);
		colon = rb ? strchr(rb, ':') : NULL;
	} else {
		snprintf(host, hcap, "%.*s", colon ? (int)(colon - hp) : (int)strlen(hp), hp);
	}
	snprintf(port, pcap, "%s", colon ? colon + 1 : "80");
}

/* A non-blocking connect to the next address: 0 in flight (or done),
 * -1 when every address failed at once (errno kept). */
static int tn_conn_next(struct tn_conn *c, int *fd_out)
{
	int saved = ECONNREFUSED;

	while (c->next) {
		struct addrinfo *a = c->next;
		int fd, one = 1;

		c->next = a->ai_next;
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    a->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
			*fd_out = fd;
			return 0;
		}
		saved = errno;
		close(fd);
	}
	errno = saved;
	return -1;
}

/* The facts every failure on the way to the SCM host carries. */
static struct tn_facts tn_conn_facts(const struct tn_config *c, enum tn_err_phase phase)
{
	return (struct tn_facts){ .host = c->host, .port = c->port, .proxy = c->proxy,
				  .phase = phase };
}

/* e: the errno (or EAI_ code with dns) of the failure */
static int tn_conn_failed(const struct tn_config *c, int dns, int e, struct tn_err *err)
{
	struct tn_facts f = tn_conn_facts(c, TN_P_CONNECT);

	if (dns && e == EAI_SYSTEM && (tn_err_is_fds(errno) || errno == ENOMEM)) {
		e = errno;	/* resolving needed a descriptor (or memory) */
		dns = 0;
	}
	if (dns && e == EAI_MEMORY)
		return tn_err_resource(err, ENOMEM, &f);
	if (!dns && (tn_err_is_fds(e) || e == ENOBUFS || e == ENOMEM))
		return tn_err_resource(err, e, &f);
	if (c->proxy) {
		f.errnum = dns ? 0 : e;
		return tn_err_set(err, dns ? TN_R_PROXY_UNKNOWN_HOST : TN_R_PROXY_UNREACHABLE, &f);
	}
	if (dns)
		return tn_err_set(err, TN_R_DNS_UNKNOWN_HOST, &f);
	f.errnum = e;
	return tn_err_set(err, e == ECONNREFUSED ? TN_R_CONNECT_REFUSED : TN_R_CONNECT_UNREACHABLE, &f);
}

void tn_conn_init(struct tn_conn *conn, const struct tn_config *cfg)
{
	memset(conn, 0, sizeof(*conn));
	conn->cfg = cfg;
}

void tn_conn_free(struct tn_conn *conn)
{
	if (conn->ai)
		freeaddrinfo(conn->ai);
	conn->ai = conn->next = NULL;
	tn_http_head_free(&conn->ans);
}

int tn_conn_start(struct tn_conn *conn, int *fd, struct tn_err *err)
{
	const struct tn_config *c = conn->cfg;
	struct addrinfo hints;
	char host[256], port[16];
	int rc;

	if (c->proxy) {
		tn_conn_proxy_split(c->proxy, host, sizeof(host), port, sizeof(port));
	} else {
		snprintf(host, sizeof(host), "%s", c->host);
		snprintf(port, sizeof(port), "%d", c->port);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	errno = 0;
	rc = getaddrinfo(host, port, &hints, &conn->ai);
	if (rc || !conn->ai) {
		conn->ai = NULL;
		return tn_conn_failed(c, 1, rc, err);
	}
	conn->next = conn->ai;
	if (tn_conn_next(conn, fd))
		return tn_conn_failed(c, 0, errno, err);
	return 0;
}

/*
 * The socket became writable: connected, or this address failed. On a
 * failure the next address is tried on a new socket, which the caller
 * watches instead (the old one's poll result may carry POLLHUP).
 */
int tn_conn_finish(struct tn_conn *conn, int *fd, struct tn_err *err)
{
	socklen_t sl = sizeof(int);
	int soerr = 0;

	if (getsockopt(*fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
		soerr = errno;
	if (!soerr) {
		freeaddrinfo(conn->ai);	/* no longer needed */
		conn->ai = conn->next = NULL;
		return 1;
	}
	if (tn_conn_next(conn, fd))
		return tn_conn_failed(conn->cfg, 0, errno, err);
	return 0;
}

/* HTTP CONNECT to the SCM host, with the Proxy-Authorization value when
 * there is one (this request is the only place it goes). A fresh socket
 * takes these few hundred bytes at once. */
int tn_conn_proxy_send(struct tn_conn *conn, int fd, struct tn_err *err)
{
	const struct tn_config *c = conn->cfg;
	size_t cap = 600 + 2 * strlen(c->host) + (c->proxy_auth ? strlen(c->proxy_auth) : 0);
	char *req = malloc(cap);
	int n;
	ssize_t s;

	if (!req) {
		struct tn_facts f = tn_conn_facts(c, TN_P_PROXY);

		return tn_err_resource(err, ENOMEM, &f);
	}
	n = snprintf(req, cap, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s\r\n",
		     c->host, c->port, c->host, c->port,
		     c->proxy_auth ? "Proxy-Authorization: " : "",
		     c->proxy_auth ? c->proxy_auth : "", c->proxy_auth ? "\r\n" : "");
	s = n < 0 || (size_t)n >= cap ? -2 : send(fd, req, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	explicit_bzero(req, cap);	/* it held the proxy credentials */
	free(req);
	if (s == -2)
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "CONNECT request too long");
	if (s != n)
		return TN_FAIL(err, TN_R_PROXY_UNREACHABLE, .proxy = c->proxy, .host = c->host,
			       .port = c->port, .phase = TN_P_PROXY, .errnum = s < 0 ? errno : 0);
	return 0;
}

/* Bytes of the proxy's answer: 1 when it said 200 (the tunnel is open), 0
 * while incomplete, -1 (err set) on a refusal or a malformed answer. What
 * follows the header block is the tunnel's (and nothing, before our TLS
 * hello): not the answer's. */
int tn_conn_proxy_answer(struct tn_conn *conn, const char *in, size_t len, struct tn_err *err)
{
	struct tn_facts f = tn_conn_facts(conn->cfg, TN_P_PROXY);
	size_t used;
	int status;

	switch (tn_http_head_feed(&conn->ans, in, len, &used)) {
	case TN_HTTP_MORE:
		return 0;
	case TN_HTTP_NOMEM:
		return tn_err_resource(err, ENOMEM, &f);
	case TN_HTTP_MALFORMED:
	case TN_HTTP_OVERSIZED:
		return tn_err_set(err, TN_R_PROXY_MALFORMED, &f);
	case TN_HTTP_DONE:
		break;
	}
	status = tn_http_status(conn->ans.buf);
	if (status < 100)
		return tn_err_set(err, TN_R_PROXY_MALFORMED, &f);
	if (status != 200) {
		f.status = status;
		return tn_err_set(err, status == 407 ? TN_R_PROXY_AUTH_REQUIRED : TN_R_PROXY_REFUSED, &f);
	}
	tn_http_head_free(&conn->ans);
	return 1;
}

/* Reads what the proxy sent so far. Whatever arrives before our TLS hello
 * is the answer: the proxy relays nothing from the server until then. */
int tn_conn_proxy_rx(struct tn_conn *conn, int fd, struct tn_err *err)
{
	char buf[2048];
	ssize_t s = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (s <= 0) {
		struct tn_facts f = tn_conn_facts(conn->cfg, TN_P_PROXY);

		return tn_err_set(err, TN_R_PROXY_CLOSED, &f);
	}
	return tn_conn_proxy_answer(conn, buf, (size_t)s, err);
}
