/*
 * tn_pump.c - stdio mode (OpenSSH's ProxyCommand): standard input and
 * output relayed to one end of a socketpair; the engine adopts the other
 * end as one local connection, so the relay to the WebSocket is the usual
 * one. One native thread with a bounded buffer per direction polls only
 * what has data or room (OpenBSD nc readwrite()). It never touches a
 * PyObject and blocks every signal: Ctrl+C and SIGTERM belong to Python's
 * main thread.
 *
 * Ends: stdin EOF -> shutdown(SHUT_WR) on the pair (the engine closes the
 * WebSocket: it has no half-close). The pair's EOF (the WebSocket ended)
 * -> what is buffered is written, stdout is pointed at /dev/null so its
 * reader sees EOF, and the pump is done. tn_pump_free() wakes the thread
 * through a pipe from any state, so it never waits on a stuck reader.
 *
 * The stdio descriptors stay blocking (they may be shared with a shell):
 * reads follow POLLIN, and writes to a pipe or terminal follow POLLOUT and
 * are at most PIPE_BUF bytes, which POLLOUT guarantees will not block.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tn_pump.h"
#include "tn_limits.h"	/* TN_LOCAL_CHUNK: the buffer per direction */
#include "tn_time.h"

struct tn_pump {
	int in_fd, out_fd;	/* the process's stdio: never closed here */
	int sock;		/* our end of the socketpair, nonblocking */
	int wake[2];		/* tn_pump_free -> thread */
	int out_kind;		/* S_IFMT of out_fd: how large a write may be */
	pthread_t thread;
	int thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;		/* guarded by mu */
	struct tn_err err;	/* written by the thread before done */
	atomic_uint_fast64_t bytes_in, bytes_out;
	unsigned char up[TN_LOCAL_CHUNK];	/* stdin -> pair */
	unsigned char down[TN_LOCAL_CHUNK];	/* pair -> stdout */
};

static int tn_pump_again(int e)
{
	return e == EINTR || e == EAGAIN || e == EWOULDBLOCK;
}

/* The reader of stdout gets EOF once no descriptor refers to its pipe;
 * /dev/null keeps out_fd valid for the rest of the process. */
static void tn_pump_close_out(struct tn_pump *p)
{
	int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);

	if (nul < 0) {
		TN_FAIL(&p->err, TN_R_INTERNAL, .detail = "opening /dev/null", .errnum = errno);
		return;
	}
	if (dup2(nul, p->out_fd) < 0)
		TN_FAIL(&p->err, TN_R_INTERNAL, .detail = "closing standard output", .errnum = errno);
	close(nul);
}

/* At most what a poll()ed descriptor of this kind takes without blocking. */
static size_t tn_pump_piece(const struct tn_pump *p, size_t len)
{
	if (p->out_kind == S_IFREG || p->out_kind == S_IFSOCK)
		return len;	/* files do not block; sockets get MSG_DONTWAIT */
	return len < PIPE_BUF ? len : PIPE_BUF;
}

static ssize_t tn_pump_write_out(struct tn_pump *p, const unsigned char *buf, size_t len)
{
	if (p->out_kind == S_IFSOCK)
		return send(p->out_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	return write(p->out_fd, buf, tn_pump_piece(p, len));
}

static void tn_pump_finish(struct tn_pump *p)
{
	pthread_mutex_lock(&p->mu);
	p->done = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static void *tn_pump_main(void *arg)
{
	struct tn_pump *p = arg;
	size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
	int in_open = 1, sock_open = 1;

	for (;;) {
		struct pollfd fds[4];
		int n = 0, i_wake, i_in = -1, i_sock = -1, i_out = -1;
		short sock_events = 0;
		ssize_t got;

		if (!sock_open && down_off == down_len)
			break;	/* the WebSocket ended and stdout has it all */
		fds[n].fd = p->wake[0];
		fds[n].events = POLLIN;
		i_wake = n++;
		if (in_open && up_len == 0) {
			fds[n].fd = p->in_fd;
			fds[n].events = POLLIN;
			i_in = n++;
		}
		if (up_len > 0)
			sock_events |= POLLOUT;
		if (sock_open && down_len == 0)
			sock_events |= POLLIN;
		if (sock_events) {
			fds[n].fd = p->sock;
			fds[n].events = sock_events;
			i_sock = n++;
		}
		if (down_len > 0) {
			fds[n].fd = p->out_fd;
			fds[n].events = POLLOUT;
			i_out = n++;
		}
		if (poll(fds, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			TN_FAIL(&p->err, TN_R_INTERNAL, .detail = "poll", .errnum = errno);
			break;
		}
		if (fds[i_wake].revents)
			goto out;	/* tn_pump_free: stop where we are */

		if (i_in >= 0 && fds[i_in].revents) {
			got = read(p->in_fd, p->up, sizeof(p->up));
			if (got > 0) {
				up_len = (size_t)got;
				up_off = 0;
				atomic_fetch_add(&p->bytes_in, (uint64_t)got);
			} else if (got == 0 || !tn_pump_again(errno)) {
				if (got < 0)
					TN_FAIL(&p->err, TN_R_CLOSED_STDIN, .errnum = errno);
				in_open = 0;	/* no half-close on a WebSocket: it ends */
				shutdown(p->sock, SHUT_WR);
			}
		}
		if (i_sock >= 0 && (fds[i_sock].revents & (POLLOUT | POLLERR | POLLHUP)) && up_len > 0) {
			got = send(p->sock, p->up + up_off, up_len - up_off, MSG_NOSIGNAL);
			if (got > 0) {
				up_off += (size_t)got;
				if (up_off == up_len)
					up_len = up_off = 0;
			} else if (got < 0 && !tn_pump_again(errno)) {
				up_len = up_off = 0;	/* the engine closed: nobody to send to */
				in_open = 0;
			}
		}
		if (i_sock >= 0 && (fds[i_sock].revents & (POLLIN | POLLERR | POLLHUP)) && sock_open &&
		    down_len == 0) {
			got = recv(p->sock, p->down, sizeof(p->down), 0);
			if (got > 0) {
				down_len = (size_t)got;
				down_off = 0;
			} else if (got == 0 || !tn_pump_again(errno)) {
				sock_open = 0;
			}
		}
		if (i_out >= 0 && fds[i_out].revents) {
			got = tn_pump_write_out(p, p->down + down_off, down_len - down_off);
			if (got > 0) {
				down_off += (size_t)got;
				atomic_fetch_add(&p->bytes_out, (uint64_t)got);
				if (down_off == down_len)
					down_len = down_off = 0;
			} else if (got < 0 && !tn_pump_again(errno)) {
				/* the reader is gone (EPIPE): nothing more can be delivered */
				if (errno != EPIPE)
					TN_FAIL(&p->err, TN_R_CLOSED_STDOUT, .errnum = errno);
				down_len = down_off = 0;
				sock_open = 0;
			}
		}
	}
	tn_pump_close_out(p);
out:
	shutdown(p->sock, SHUT_RDWR);	/* the engine's side ends now */
	tn_pump_finish(p);
	return NULL;
}

int tn_pump_start(struct tn_pump **out, int in_fd, int out_fd, int *peer_fd, struct tn_err *err)
{
	struct tn_pump *p;
	struct stat st;
	sigset_t all, old;
	int pair[2], rc;

	*out = NULL;
	*peer_fd = -1;
	if (fstat(in_fd, &st) || fstat(out_fd, &st))
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "standard input or output is closed",
			       .errnum = errno);
	p = calloc(1, sizeof(*p));
	if (!p)
		return tn_err_resource(err, ENOMEM, NULL);
	p->in_fd = in_fd;
	p->out_fd = out_fd;
	p->out_kind = (int)(st.st_mode & S_IFMT);
	p->sock = p->wake[0] = p->wake[1] = -1;
	if (pthread_mutex_init(&p->mu, NULL)) {
		free(p);
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "creating a mutex");
	}
	if (tn_time_cond_init(&p->cv)) {
		pthread_mutex_destroy(&p->mu);
		free(p);
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "creating a condition variable");
	}
	if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK)) {
		TN_FAIL(err, TN_R_INTERNAL, .detail = "creating a pipe", .errnum = errno);
		tn_pump_free(p);
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair)) {
		TN_FAIL(err, TN_R_INTERNAL, .detail = "creating a socket pair", .errnum = errno);
		tn_pump_free(p);
		return -1;
	}
	p->sock = pair[0];

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&p->thread, NULL, tn_pump_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		close(pair[1]);
		TN_FAIL(err, TN_R_INTERNAL, .detail = "starting the stdio thread");
		tn_pump_free(p);
		return -1;
	}
	p->thread_started = 1;
	*peer_fd = pair[1];
	*out = p;
	return 0;
}

int tn_pump_wait(struct tn_pump *p, int timeout_ms)
{
	struct timespec deadline = tn_time_deadline(timeout_ms);
	int rc = 0, done;

	pthread_mutex_lock(&p->mu);
	while (!p->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
	done = p->done;
	pthread_mutex_unlock(&p->mu);
	return done;
}

void tn_pump_counts(struct tn_pump *p, uint64_t *in, uint64_t *out)
{
	*in = atomic_load(&p->bytes_in);
	*out = atomic_load(&p->bytes_out);
}

void tn_pump_error(struct tn_pump *p, struct tn_err *err)
{
	pthread_mutex_lock(&p->mu);
	if (p->done)
		*err = p->err;
	else
		tn_err_clear(err);
	pthread_mutex_unlock(&p->mu);
}

void tn_pump_free(struct tn_pump *p)
{
	if (!p)
		return;
	if (p->thread_started) {
		ssize_t w;

		do
			w = write(p->wake[1], "x", 1);
		while (w < 0 && errno == EINTR);
		pthread_join(p->thread, NULL);
	}
	if (p->sock >= 0)
		close(p->sock);
	if (p->wake[0] >= 0)
		close(p->wake[0]);
	if (p->wake[1] >= 0)
		close(p->wake[1]);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
