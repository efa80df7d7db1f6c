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
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tn_engine.h"

int tn_listen_open(const char *addr, int port, int *fd_out, int *port_out, struct tn_err *err)
{
	struct addrinfo hints, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char service[16];
	int fd, one = 1, rc, e;

	*fd_out = -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(addr, service, &hints, &res);
	if (rc)
		return tn_err_set(err, TN_E_BIND, 0, "cannot listen on %s: %s", addr, gai_strerror(rc));

	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		freeaddrinfo(res);
		return tn_err_set(err, TN_E_BIND, 0, "cannot create a socket: %s", strerror(e));
	}
	/* SO_REUSEADDR only lets us reuse TIME_WAIT ports; a live listener
	 * still makes bind() fail with EADDRINUSE. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
		e = errno;
		close(fd);
		freeaddrinfo(res);
		if (e == EADDRINUSE)
			return tn_err_set(err, TN_E_BIND, 0,
					  "port %d on %s is already in use; choose another with --port",
					  port, addr);
		return tn_err_set(err, TN_E_BIND, 0, "cannot listen on %s port %d: %s",
				  addr, port, strerror(e));
	}
	freeaddrinfo(res);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		e = errno;
		close(fd);
		return tn_err_set(err, TN_E_BIND, 0, "getsockname: %s", strerror(e));
	}
	*port_out = ntohs(ss.ss_family == AF_INET6 ?
			  ((struct sockaddr_in6 *)&ss)->sin6_port :
			  ((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
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

/* Service thread: relay one connected local socket (accepted, or adopted
 * through tn_engine_adopt). fd is ours: closed on every failure. */
void tn_listen_relay_fd(struct tn_engine *eng, int fd, const char *peer)
{
	lws_sock_file_fd_type sfd;
	struct tn_relay *r;

	r = tn_relay_new(eng);
	if (!r) {
		close(fd);
		atomic_fetch_add(&eng->stats.failures, 1);
		return;
	}
	snprintf(r->peer, sizeof(r->peer), "%s", peer);
	atomic_fetch_add(&eng->stats.open, 1);
	atomic_fetch_add(&eng->stats.total, 1);

	sfd.sockfd = fd;
	r->local = lws_adopt_descriptor_vhost(eng->vh, LWS_ADOPT_SOCKET, sfd, "tunnel-local", NULL);
	if (!r->local) {	/* lws closed fd */
		tn_err_set(&r->err, TN_E_INTERNAL, 0, "cannot adopt the local connection");
		r->local_gone = 1;
		r->ws_gone = 1;
		tn_relay_finish(r);
		return;
	}
	lws_set_opaque_user_data(r->local, r);
	tn_relay_connect(r);
}

#define TN_LISTEN_BACKOFF_US	(100 * 1000)
#define TN_LISTEN_TELL_US	(5 * LWS_US_PER_SEC)	/* one event per episode, at most this often */

static void tn_listen_resume(lws_sorted_usec_list_t *sul)
{
	struct tn_engine *eng = lws_container_of(sul, struct tn_engine, listen_sul);

	if (!eng->listen_paused || !eng->listen_wsi)
		return;
	eng->listen_paused = 0;
	lws_rx_flow_control(eng->listen_wsi, 1);
}

/*
 * accept() found no descriptor (or memory) for the connection: it stays in
 * the backlog and the listener stays readable, so accepting again at once
 * would spin at 100% CPU until something closes. Stop watching the
 * listener for a moment instead, and tell the user why connections wait.
 */
static void tn_listen_back_off(struct tn_engine *eng, int e)
{
	lws_usec_t now = lws_now_usecs();
	struct tn_event ev;
	struct tn_err err;

	if (!eng->listen_wsi || eng->listen_paused)
		return;
	eng->listen_paused = 1;
	lws_rx_flow_control(eng->listen_wsi, 0);
	lws_sul_schedule(lws_get_context(eng->listen_wsi), 0, &eng->listen_sul, tn_listen_resume,
			 TN_LISTEN_BACKOFF_US);
	if (eng->listen_told && now - eng->listen_told < TN_LISTEN_TELL_US)
		return;
	eng->listen_told = now;
	if (tn_err_is_fds(e))
		tn_err_set_fds(&err, e, "accepting a local connection; it waits until one is free");
	else
		tn_err_set(&err, TN_E_RESOURCE, 0,
			   "out of memory accepting a local connection; it waits");
	memset(&ev, 0, sizeof(ev));
	ev.kind = TN_EV_FAILED;
	ev.error_kind = err.kind;
	snprintf(ev.peer, sizeof(ev.peer), "%s:%d", eng->cfg.bind_addr, eng->port);
	snprintf(ev.message, sizeof(ev.message), "%s", err.msg);
	tn_events_push(&eng->events, &ev);
}

/* Service thread, before the context goes. */
void tn_listen_stop(struct tn_engine *eng)
{
	lws_sul_cancel(&eng->listen_sul);
	eng->listen_paused = 0;
}

/* Service thread, listener readable: accept everything pending. Failures
 * of one accept never stop the listener. */
int tn_listen_accept(struct tn_engine *eng)
{
	if (eng->listen_paused)
		return 0;	/* a readiness reported before the pause */
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char peer[64];
		int one = 1, fd;

		fd = accept4(eng->listen_fd, (struct sockaddr *)&ss, &sl,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int e = errno;

			if (e == EINTR || e == ECONNABORTED)
				continue;
			if (tn_err_is_fds(e) || e == ENOBUFS || e == ENOMEM)
				tn_listen_back_off(eng, e);
			return 0;	/* EAGAIN: drained */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		tn_peer_name(&ss, peer, sizeof(peer));
		tn_listen_relay_fd(eng, fd, peer);
	}
}
