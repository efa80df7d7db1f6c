/*
 * scm_relay.c - the tunnel's data path: one accepted WebSocket <-> one TCP
 * connection to the routed container port, on the connection's own thread.
 *
 *   up:   client frames -> in (as read) -> unmasked into up -> container
 *   down: each read of the container (AppsvcTunnelBuffer bytes at most)
 *         -> one binary message in out -> client
 *
 * Both sockets are non-blocking; each operation is tried until it would
 * block, and only then is its socket polled for it, so a busy tunnel makes
 * few system calls.  Buffers are bounded: a full up buffer stops reading the
 * client, a pending message stops reading the container.
 *
 * Every end closes the WebSocket with 1011 "Connection failure." after the
 * messages already read are sent, as the real SCM does (PROTOCOL.md
 * section 2).  Faults (drop/stall after N bytes) are read live from the
 * site, so a SIGHUP applies them to open tunnels too.
 */
#include "scm.h"
#include "scm_ws.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RELAY_IN_CAP (64 * 1024)	/* client bytes as read: frames */
#define RELAY_UP_CAP (256 * 1024)	/* unmasked, for the container */
#define RELAY_CONTROL_ROOM 256		/* a pong, a keep-alive, the close */
#define RELAY_CONNECT_MS 5000
/* How long a closing tunnel may take to hand the container the rest. */
#define RELAY_FLUSH_MS 10000
/* How long to wait for the client's answer to our close. */
#define RELAY_CLOSE_WAIT_MS 2000
#define RELAY_CLOSE_CODE 1011
#define RELAY_CLOSE_REASON "Connection failure."

static atomic_size_t relay_open;

struct relay {
	struct scm_conn *c;
	int tfd;			/* the container; -1 once closed */
	const struct scm_site *site;
	size_t read_size;
	long long keepalive_ms, next_keepalive;
	int keepalive_pong;

	unsigned char *in;
	size_t in_off, in_len;
	struct ws_rx rx;
	unsigned char *up;
	size_t up_off, up_len;
	unsigned char *out;
	size_t out_off, out_len, out_cap;
	unsigned long long relayed;	/* bytes admitted, both directions */

	short client_read_wait;		/* what SSL_read waits for; 0: none */
	short client_write_wait;	/* what SSL_write waits for; 0: none */
	unsigned target_read_wait:1;
	unsigned target_write_wait:1;
	unsigned client_gone:1;		/* EOF, error or protocol violation */
	unsigned peer_closed:1;		/* the client's close frame came */
	unsigned client_done:1;		/* no more client I/O */
	unsigned ending:1;		/* the container side is over */
	unsigned close_sent:1;
	unsigned dropping:1;		/* fault: close without a frame */
	unsigned stalled:1;		/* fault: relay nothing more */
	unsigned stopping:1;		/* server shutdown */
	long long close_deadline, flush_deadline;
};

size_t
relay_open_count(void)
{
	return atomic_load(&relay_open);
}

static void
relay_close_target(struct relay *r)
{
	if (r->tfd >= 0)
		close(r->tfd);
	r->tfd = -1;
	r->up_off = r->up_len = 0;
}

/* The container side is over: flush what it sent, then close with 1011. */
static void
relay_end(struct relay *r)
{
	relay_close_target(r);
	r->ending = 1;
}

/* How many of len new bytes may pass, applying drop/stall faults. */
static size_t
relay_admit(struct relay *r, size_t len)
{
	struct scm_fault f;
	unsigned long long left;

	if (r->dropping || r->stalled || r->ending || r->close_sent)
		return 0;
	config_read_begin();
	f = r->site->fault;
	config_read_end();
	if (f.kind != SCM_FAULT_DROP && f.kind != SCM_FAULT_STALL) {
		r->relayed += len;
		return len;
	}
	left = r->relayed < (unsigned long long)f.value ?
	       (unsigned long long)f.value - r->relayed : 0;
	if (len < left) {
		r->relayed += len;
		return len;
	}
	r->relayed += left;
	scm_log(SCM_LOG_NOTICE, "fault: %s after %llu bytes\n",
		f.kind == SCM_FAULT_DROP ? "dropping" : "stalling",
		r->relayed);
	if (f.kind == SCM_FAULT_DROP)
		r->dropping = 1;
	else
		r->stalled = 1;
	return (size_t)left;
}

static int
relay_queue_control(struct relay *r, unsigned opcode,
		    const unsigned char *payload, size_t len)
{
	unsigned char *p;

	if (r->out_off == r->out_len)
		r->out_off = r->out_len = 0;
	if (r->out_cap - r->out_len < 2 + len)
		return -1;
	p = r->out + r->out_len;
	r->out_len += ws_header(p, opcode, len);
	if (len)
		memcpy(r->out + r->out_len, payload, len);
	r->out_len += len;
	return 0;
}

static void
relay_queue_close(struct relay *r)
{
	unsigned char p[2 + sizeof(RELAY_CLOSE_REASON) - 1];

	p[0] = RELAY_CLOSE_CODE >> 8;
	p[1] = RELAY_CLOSE_CODE & 0xff;
	memcpy(p + 2, RELAY_CLOSE_REASON, sizeof(RELAY_CLOSE_REASON) - 1);
	if (!relay_queue_control(r, WS_OP_CLOSE, p, sizeof(p)))
		r->close_sent = 1;
}

static size_t
relay_up_room(struct relay *r)
{
	if (r->up_off == r->up_len)
		r->up_off = r->up_len = 0;
	else if (r->up_off && RELAY_UP_CAP - r->up_len < RELAY_IN_CAP) {
		memmove(r->up, r->up + r->up_off, r->up_len - r->up_off);
		r->up_len -= r->up_off;
		r->up_off = 0;
	}
	return RELAY_UP_CAP - r->up_len;
}

/* Frames already read: data to up, control frames answered. */
static void
relay_parse(struct relay *r)
{
	enum ws_rx_event ev;
	size_t used, got, room, keep;

	while (r->in_off < r->in_len && !r->client_gone && !r->peer_closed &&
	       !r->stalled && !r->dropping) {
		if (r->out_cap - r->out_len < RELAY_CONTROL_ROOM &&
		    r->out_off != r->out_len)
			return;		/* room for a pong first */
		room = relay_up_room(r);
		if (!room)
			return;
		ev = ws_rx_step(&r->rx, r->in + r->in_off,
				r->in_len - r->in_off, &used,
				r->up + r->up_len, room, &got);
		r->in_off += used;
		switch (ev) {
		case WS_RX_DATA:
			keep = r->tfd >= 0 ? relay_admit(r, got) : 0;
			r->up_len += keep;
			break;
		case WS_RX_PING:
			if (!r->close_sent)
				relay_queue_control(r, WS_OP_PONG,
						    r->rx.control,
						    r->rx.control_len);
			break;
		case WS_RX_PONG:
		case WS_RX_MORE:
			break;
		case WS_RX_CLOSE:
			r->peer_closed = 1;
			break;
		case WS_RX_ERROR:
			scm_log(SCM_LOG_NOTICE, "client: %s\n", r->rx.error);
			r->client_gone = 1;
			break;
		}
	}
	if (r->in_off == r->in_len)
		r->in_off = r->in_len = 0;
}

static int
relay_client_in(struct relay *r)
{
	int progress = 0;
	ssize_t n;

	for (;;) {
		relay_parse(r);
		if (r->in_len || r->client_read_wait || r->client_gone ||
		    r->peer_closed || r->client_done || r->stalled ||
		    r->dropping || r->up_len - r->up_off >= RELAY_UP_CAP / 2)
			return progress;
		n = tls_read_nb(r->c->ssl, r->in, RELAY_IN_CAP,
				&r->client_read_wait);
		if (n == -1)
			return progress;
		progress = 1;
		if (n <= 0) {
			r->client_gone = 1;
			return progress;
		}
		r->in_len = (size_t)n;
	}
}

static int
relay_target_out(struct relay *r)
{
	ssize_t n;

	if (r->tfd < 0 || r->up_off == r->up_len || r->target_write_wait)
		return 0;
	n = send(r->tfd, r->up + r->up_off, r->up_len - r->up_off,
		 MSG_NOSIGNAL);
	if (n > 0) {
		r->up_off += (size_t)n;
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		r->target_write_wait = errno == EAGAIN;
		return errno == EINTR;
	}
	relay_end(r);
	return 1;
}

static int
relay_target_in(struct relay *r)
{
	size_t keep, h;
	ssize_t n;

	if (r->tfd < 0 || r->target_read_wait || r->out_off != r->out_len ||
	    r->stalled || r->dropping || r->ending || r->close_sent ||
	    r->peer_closed || r->client_done)
		return 0;
	n = recv(r->tfd, r->out + WS_HEADER_MAX, r->read_size, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		r->target_read_wait = errno == EAGAIN;
		return errno == EINTR;
	}
	if (n <= 0) {
		relay_end(r);
		return 1;
	}
	keep = relay_admit(r, (size_t)n);
	if (keep) {
		unsigned char head[WS_HEADER_MAX];

		h = ws_header(head, WS_OP_BINARY, keep);
		r->out_off = WS_HEADER_MAX - h;
		memcpy(r->out + r->out_off, head, h);
		r->out_len = WS_HEADER_MAX + keep;
	}
	return 1;
}

static int
relay_client_out(struct relay *r)
{
	ssize_t n;

	if (r->out_off == r->out_len || r->client_write_wait ||
	    r->client_gone || r->client_done)
		return 0;
	n = tls_write_nb(r->c->ssl, r->out + r->out_off,
			 r->out_len - r->out_off, &r->client_write_wait);
	if (n == -1)
		return 0;
	if (n < 0) {
		r->client_gone = 1;
		return 1;
	}
	r->out_off += (size_t)n;
	if (r->out_off == r->out_len)
		r->out_off = r->out_len = 0;
	return 1;
}

/* Closing steps; 1 when the relay is over. */
static int
relay_settle(struct relay *r, long long now)
{
	int flushed = r->out_off == r->out_len;

	if (!r->client_done) {
		if (r->client_gone) {
			r->client_done = 1;
		} else if (r->dropping && flushed) {
			r->c->abort = 1;
			r->client_done = 1;
		} else if ((r->ending || r->peer_closed) && !r->close_sent) {
			if (flushed) {
				relay_queue_close(r);
				r->close_deadline = now + (r->stopping ? 0 :
						   RELAY_CLOSE_WAIT_MS);
			}
		} else if (r->close_sent && flushed &&
			   (r->peer_closed || now >= r->close_deadline)) {
			r->client_done = 1;
		}
		if (r->client_done)
			r->flush_deadline = now + RELAY_FLUSH_MS;
	}
	if (!r->client_done)
		return 0;
	if (r->tfd >= 0 && (r->up_off == r->up_len || r->stopping ||
			    now >= r->flush_deadline)) {
		shutdown(r->tfd, SHUT_WR);
		relay_close_target(r);
	}
	return r->tfd < 0;
}

static void
relay_keepalive(struct relay *r, long long now)
{
	if (r->keepalive_ms <= 0 || now < r->next_keepalive)
		return;
	if (!r->close_sent && !r->client_done &&
	    relay_queue_control(r, r->keepalive_pong ? WS_OP_PONG : WS_OP_PING,
				NULL, 0)) {
		/* no room behind a message the client is slow to take */
		r->next_keepalive = now + 100;
		return;
	}
	r->next_keepalive = now + r->keepalive_ms;
}

static int
relay_timeout(const struct relay *r, long long now)
{
	long long t = -1, d;

	if (r->keepalive_ms > 0 && !r->close_sent)
		t = r->next_keepalive;
	if (r->close_sent && !r->client_done &&
	    (t < 0 || r->close_deadline < t))
		t = r->close_deadline;
	if (r->client_done && (t < 0 || r->flush_deadline < t))
		t = r->flush_deadline;
	if (t < 0)
		return -1;
	d = t - now;
	return d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
}

/* One poll for whatever the sockets were found blocked on. */
static void
relay_wait(struct relay *r)
{
	struct pollfd p[3];
	long long now = scm_now_ms();
	int n;

	p[0].fd = r->client_done ? -1 : r->c->fd;
	p[0].events = (short)(POLLRDHUP | r->client_read_wait |
			      r->client_write_wait);
	p[1].fd = r->tfd;
	p[1].events = (short)((r->target_read_wait ? POLLIN : 0) |
			      (r->target_write_wait ? POLLOUT : 0));
	p[2].fd = r->stopping ? -1 : stop_fd();
	p[2].events = POLLIN;
	p[0].revents = p[1].revents = p[2].revents = 0;
	n = poll(p, 3, relay_timeout(r, now));
	if (n <= 0)
		return;
	if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP)) {
		/* the calls themselves say what happened; stalled, nobody
		 * reads, so the hang-up is the end */
		r->client_read_wait = r->client_write_wait = 0;
		if (r->stalled)
			r->client_gone = 1;
	}
	if (p[0].revents & r->client_read_wait)
		r->client_read_wait = 0;
	if (p[0].revents & r->client_write_wait)
		r->client_write_wait = 0;
	if (p[1].revents & (POLLIN | POLLERR | POLLHUP))
		r->target_read_wait = 0;
	if (p[1].revents & (POLLOUT | POLLERR | POLLHUP))
		r->target_write_wait = 0;
	if (p[2].revents & POLLIN) {
		r->stopping = 1;
		relay_end(r);
	}
}

static void
relay_loop(struct relay *r)
{
	long long now;
	int progress;

	for (;;) {
		do {
			progress = relay_client_in(r);
			progress |= relay_target_out(r);
			progress |= relay_target_in(r);
			progress |= relay_client_out(r);
			now = scm_now_ms();
			relay_keepalive(r, now);
			if (relay_settle(r, now))
				return;
			progress |= relay_client_out(r);
		} while (progress);
		relay_wait(r);
	}
}

void
relay_run(struct scm_conn *c, const struct scm_route *route,
	  const unsigned char *early, size_t early_len)
{
	struct relay r;

	memset(&r, 0, sizeof(r));
	r.c = c;
	r.site = c->site;
	r.tfd = -1;
	r.read_size = route->read_size ? route->read_size : SCM_DEFAULT_READ;
	r.out_cap = WS_HEADER_MAX + r.read_size + 2 * RELAY_CONTROL_ROOM;
	r.in = malloc(RELAY_IN_CAP);
	r.up = malloc(RELAY_UP_CAP);
	r.out = malloc(r.out_cap);
	atomic_fetch_add(&relay_open, 1);
	if (!r.in || !r.up || !r.out || early_len > RELAY_IN_CAP) {
		scm_log(SCM_LOG_ERR, "tunnel: out of memory\n");
		goto out;
	}
	memcpy(r.in, early, early_len);
	r.in_len = early_len;
	config_read_begin();
	r.keepalive_ms = (long long)c->cfg->keepalive_seconds * 1000;
	r.keepalive_pong = c->cfg->keepalive_pong;
	config_read_end();
	r.next_keepalive = scm_now_ms() + r.keepalive_ms;
	if (route->loopback_port > 0)
		r.tfd = probe_connect(route->loopback_port, RELAY_CONNECT_MS);
	if (r.tfd < 0)
		r.ending = 1;	/* "cannot reach": 1011 at once */
	relay_loop(&r);
out:
	relay_close_target(&r);
	atomic_fetch_sub(&relay_open, 1);
	free(r.in);
	free(r.up);
	free(r.out);
}
