/*
 * scm_probe.c - connections to a container port: GetStatus's "canReachPort"
 * (a real TCP connect, as the real SCM does) and the tunnel's own.
 *
 * Blocking on purpose but bounded: loopback answers at once (accept or
 * RST); the timeout only covers a listener whose backlog is full, and
 * shutdown ends it early.
 */
#include "scm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * A connected non-blocking socket to the loopback port, with Nagle off (the
 * tunnel carries keystrokes); -1: refused, timed out or no such port.
 */
int
probe_connect(int port, int timeout_ms)
{
	struct sockaddr_in sa;
	struct pollfd pfd[2];
	socklen_t elen = sizeof(int);
	int fd, e = 0, ok = 0, one = 1;

	if (port < 1 || port > 65535)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ok = 1;
	} else if (errno == EINPROGRESS) {
		pfd[0].fd = fd;
		pfd[0].events = POLLOUT;
		/* shutdown ends the wait too */
		pfd[1].fd = stop_fd();
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, timeout_ms) > 0 && pfd[0].revents &&
		    !getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) && !e)
			ok = 1;
	}
	if (ok && !setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		return fd;
	close(fd);
	return -1;
}

/* 1: connected; 0: refused, timed out or no such port. */
int
probe_tcp(int port, int timeout_ms)
{
	int fd = probe_connect(port, timeout_ms);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}
