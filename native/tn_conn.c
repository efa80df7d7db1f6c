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
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tn_engine.h"

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
static int tn_conn_next(struct tn_relay *r, int *fd_out)
{
	int saved = ECONNREFUSED;

	while (r->ai_next) {
		struct addrinfo *a = r->ai_next;
		int fd, one = 1;

		r->ai_next = a->ai_next;
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

/* e: the errno (or EAI_ code with dns) of the failure */
static int tn_conn_failed(struct tn_relay *r, int dns, int e)
{
	const struct tn_config *c = &r->eng->cfg;
	char doing[320];

	if (dns && e == EAI_SYSTEM && (tn_err_is_fds(errno) || errno == ENOMEM)) {
		e = errno;	/* resolving needed a descriptor (or memory) */
		dns = 0;
	}
	if (tn_err_is_fds(e)) {
		snprintf(doing, sizeof(doing), "connecting to %s", c->proxy ? c->proxy : c->host);
		return tn_err_set_fds(&r->err, e, doing);
	}
	if ((dns && e == EAI_MEMORY) || (!dns && (e == ENOBUFS || e == ENOMEM)))
		return tn_err_set(&r->err, TN_E_RESOURCE, 0, "out of memory connecting to %s",
				  c->proxy ? c->proxy : c->host);
	if (c->proxy)
		return tn_err_set(&r->err, TN_E_PROXY, 0, "cannot reach the proxy %s (for %s:%d)",
				  c->proxy, c->host, c->port);
	if (dns)
		return tn_err_set(&r->err, TN_E_DNS, 0, "cannot resolve the host name %s", c->host);
	return tn_err_set(&r->err, TN_E_CONNECT, 0,
			  "cannot connect to %s port %d (refused or unreachable)", c->host, c->port);
}

/* Resolve and start connecting; sets r->ws_fd. -1 with r->err set. */
int tn_conn_start(struct tn_relay *r)
{
	const struct tn_config *c = &r->eng->cfg;
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
	rc = getaddrinfo(host, port, &hints, &r->ai);
	if (rc || !r->ai) {
		r->ai = NULL;
		return tn_conn_failed(r, 1, rc);
	}
	r->ai_next = r->ai;
	if (tn_conn_next(r, &r->ws_fd))
		return tn_conn_failed(r, 0, errno);
	return 0;
}

/*
 * The socket became writable: connected, or this address failed. On a
 * failure the next address is tried on a new socket (r->ws_fd), which the
 * caller adopts as a new wsi: lws closes the old one (its poll result may
 * carry POLLHUP). Returns 1 when connected, 0 when r->ws_fd is a new
 * socket in flight, -1 (r->err set) when no address is left.
 */
int tn_conn_finish(struct tn_relay *r)
{
	socklen_t sl = sizeof(int);
	int soerr = 0;

	if (getsockopt(r->ws_fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
		soerr = errno;
	if (!soerr) {
		freeaddrinfo(r->ai);	/* no longer needed */
		r->ai = r->ai_next = NULL;
		return 1;
	}
	if (tn_conn_next(r, &r->ws_fd))
		return tn_conn_failed(r, 0, errno);
	return 0;
}

/* HTTP CONNECT to the SCM host, with the Proxy-Authorization value when
 * there is one (this request is the only place it goes). A fresh socket
 * takes these few hundred bytes at once. */
int tn_conn_proxy_send(struct tn_relay *r)
{
	const struct tn_config *c = &r->eng->cfg;
	size_t cap = 600 + 2 * strlen(c->host) + (c->proxy_auth ? strlen(c->proxy_auth) : 0);
	char *req = malloc(cap);
	int n;
	ssize_t s;

	if (!req)
		return tn_err_set(&r->err, TN_E_RESOURCE, 0, "out of memory");
	n = snprintf(req, cap, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s\r\n",
		     c->host, c->port, c->host, c->port,
		     c->proxy_auth ? "Proxy-Authorization: " : "",
		     c->proxy_auth ? c->proxy_auth : "", c->proxy_auth ? "\r\n" : "");
	s = n < 0 || (size_t)n >= cap ? -2 : send(r->ws_fd, req, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	explicit_bzero(req, cap);	/* it held the proxy credentials */
	free(req);
	if (s == -2)
		return tn_err_set(&r->err, TN_E_INTERNAL, 0, "the proxy request is too long");
	if (s != n)
		return tn_err_set(&r->err, TN_E_PROXY, 0, "cannot reach the proxy %s (for %s:%d)",
				  c->proxy, c->host, c->port);
	return 0;
}

/* Bytes of the proxy's answer: 1 when it said 200 (the tunnel is open), 0
 * while incomplete, -1 (r->err set) on a refusal or a malformed answer. */
int tn_conn_proxy_answer(struct tn_relay *r, const char *in, size_t len)
{
	const struct tn_config *c = &r->eng->cfg;
	unsigned int status = 0;

	if (!r->hs_buf) {
		r->hs_buf = malloc(TN_HS_MAX + 1);
		if (!r->hs_buf)
			return tn_err_set(&r->err, TN_E_INTERNAL, 0, "out of memory");
	}
	if (len > TN_HS_MAX - r->hs_len)
		return tn_err_set(&r->err, TN_E_PROXY, 0, "the proxy %s sent an oversized answer",
				  c->proxy);
	/* a NUL would hide the end of the header block from strstr() */
	if (memchr(in, '\0', len))
		return tn_err_set(&r->err, TN_E_PROXY, 0, "the proxy %s sent a malformed answer",
				  c->proxy);
	memcpy(r->hs_buf + r->hs_len, in, len);
	r->hs_len += len;
	r->hs_buf[r->hs_len] = '\0';
	if (!strstr(r->hs_buf, "\r\n\r\n"))
		return 0;
	if (sscanf(r->hs_buf, "HTTP/1.%*1[01] %3u", &status) != 1 || status != 200) {
		tn_err_set(&r->err, TN_E_PROXY, (int)status,
			   "the proxy %s refused to CONNECT to %s:%d (HTTP %u)%s", c->proxy,
			   c->host, c->port, status,
			   status == 407 ? "; it wants credentials in HTTPS_PROXY" : "");
		return -1;
	}
	free(r->hs_buf);
	r->hs_buf = NULL;
	r->hs_len = 0;
	return 1;
}

/* Reads what the proxy sent so far. Whatever arrives before our TLS hello
 * is the answer: the proxy relays nothing from the server until then. */
int tn_conn_proxy_rx(struct tn_relay *r)
{
	const struct tn_config *c = &r->eng->cfg;
	char buf[2048];
	ssize_t s = recv(r->ws_fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (s <= 0)
		return tn_err_set(&r->err, TN_E_PROXY, 0,
				  "the proxy %s closed the connection to %s:%d", c->proxy,
				  c->host, c->port);
	return tn_conn_proxy_answer(r, buf, (size_t)s);
}
