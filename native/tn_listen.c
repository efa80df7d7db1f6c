/*
 * tn_listen.c - the local listener: a real bind() (so a busy port is a
 * precise error and port 0 works), and the accept loop that hands each
 * local connection to a new relay.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tn_listen.h"

int tn_listen_open(struct tn_listen *l, struct tn_relay_env *env, const char *addr, int port,
		   struct tn_err *err)
{
	struct addrinfo hints, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char service[16];
	int fd, one = 1, rc, e;

	memset(l, 0, sizeof(*l));
	l->env = env;
	l->addr = addr;
	l->fd = -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(addr, service, &hints, &res);
	if (rc)
		return TN_FAIL(err, TN_R_BIND_ADDRESS, .host = addr, .port = port,
			       .detail = gai_strerror(rc));

	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		freeaddrinfo(res);
		return TN_FAIL(err, TN_R_BIND_FAILED, .host = addr, .port = port, .errnum = e);
	}
	/* SO_REUSEADDR only lets us reuse TIME_WAIT ports; a live listener
	 * still makes bind() fail with EADDRINUSE. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
		e = errno;
		close(fd);
		freeaddrinfo(res);
		return TN_FAIL(err, e == EADDRINUSE ? TN_R_BIND_IN_USE :
			       e == EADDRNOTAVAIL ? TN_R_BIND_ADDRESS : TN_R_BIND_FAILED,
			       .host = addr, .port = port, .errnum = e == EADDRINUSE ? 0 : e);
	}
	freeaddrinfo(res);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		e = errno;
		close(fd);
		return TN_FAIL(err, TN_R_BIND_FAILED, .host = addr, .port = port, .errnum = e);
	}
	l->port = ntohs(ss.ss_family == AF_INET6 ?
			  ((struct sockaddr_in6 *)&ss)->sin6_port :
			  ((struct sockaddr_in *)&ss)->sin_port);
	l->fd = fd;
	return 0;
}

static void tn_peer_name(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	}
	snprintf(out, outlen, "%s:%d", host, port);
}

void tn_listen_relay_fd(struct tn_relay_env *env, int fd, const char *peer, uint64_t id)
{
	struct tn_relay *r = tn_relay_new(env, peer, id);

	if (!r) {
		close(fd);
		atomic_fetch_add(&env->stats.failures, 1);
		return;
	}
	atomic_fetch_add(&env->stats.open, 1);
	atomic_fetch_add(&env->stats.total, 1);
	tn_relay_start(r, fd);	/* failures are reported through the relay */
}

#define TN_LISTEN_BACKOFF_US	(100 * 1000)
#define TN_LISTEN_TELL_US	(5 * 1000000)	/* one event per episode, at most this often */

/*
 * accept() found no descriptor (or memory) for the connection: it stays in
 * the backlog and the listener stays readable, so accepting again at once
 * would spin at 100% CPU until something closes. Stop watching the
 * listener for a moment instead, and tell the user why connections wait.
 */
static void tn_listen_back_off(struct tn_listen *l, int e)
{
	int64_t now = tn_loop_now_us();
	struct tn_event ev;

	if (!l->w || l->paused)
		return;
	l->paused = 1;
	tn_loop_pause(l->w, 1);
	tn_loop_timer(l->w, TN_LISTEN_BACKOFF_US);
	if (l->told && now - l->told < TN_LISTEN_TELL_US)
		return;
	l->told = now;
	memset(&ev, 0, sizeof(ev));
	tn_err_resource(&ev.err, e, &(const struct tn_facts){ .host = l->addr, .port = l->port,
							      .phase = TN_P_ACCEPT });
	ev.kind = TN_EV_FAILED;
	snprintf(ev.peer, sizeof(ev.peer), "%s:%d", l->addr, l->port);
	(void)tn_events_push(&l->env->events, &ev);	/* a dropped one is counted */
}

/* Listener readable: accept everything pending. Failures of one accept
 * never stop the listener. */
static int tn_listen_accept(struct tn_listen *l)
{
	if (l->paused)
		return 0;	/* a readiness reported before the pause */
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char peer[64];
		int one = 1, fd;

		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int e = errno;

			if (e == EINTR || e == ECONNABORTED)
				continue;
			if (tn_err_is_fds(e) || e == ENOBUFS || e == ENOMEM)
				tn_listen_back_off(l, e);
			return 0;	/* EAGAIN: drained */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		tn_peer_name(&ss, peer, sizeof(peer));
		tn_listen_relay_fd(l->env, fd, peer, 0);
	}
}

static int tn_listen_event(void *ctx, enum tn_loop_ev ev, unsigned char *in, size_t len)
{
	struct tn_listen *l = ctx;

	(void)in;
	(void)len;
	switch (ev) {
	case TN_LOOP_READ:
		return tn_listen_accept(l);
	case TN_LOOP_TIMER:	/* the back-off is over */
		if (l->paused) {
			l->paused = 0;
			tn_loop_pause(l->w, 0);
		}
		return 0;
	case TN_LOOP_GONE:	/* nothing may pause it any more */
		l->w = NULL;
		l->paused = 0;
		return 0;
	case TN_LOOP_WRITE:
		break;
	}
	return 0;
}

int tn_listen_watch(struct tn_listen *l, struct tn_err *err)
{
	/* our own socket (precise bind errors, port 0) runs in the loop */
	l->w = tn_loop_adopt(l->env->link.loop, l->fd, TN_WATCH_FILE, tn_listen_event, l);
	if (!l->w) {	/* the loop closed it */
		l->fd = -1;
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "watching the listening socket");
	}
	return 0;
}
