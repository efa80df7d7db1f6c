/*
 * tn_relay.c - one local TCP connection relayed over one WebSocket.
 *
 * Modelled on lws' protocol_lws_raw_proxy: a bounded buffer per direction
 * (the up one is the link's), the reading side paused when the other's
 * buffer nears full (back-pressure instead of buffering), and the relay
 * freed in one place, once both sides are gone.
 *
 * Ends: the WebSocket going away (any close, 1011 included) flushes what
 * is buffered to the local client and then closes it, so it sees EOF; the
 * local client going away lets the link send what it holds and close the
 * WebSocket with a normal close frame (WebSocket has no half-close).
 *
 * Hold (cfg->hold): a connection the server turns away before its first
 * byte, the way a restarting app does (502/503 from the front end, a close
 * before the upgrade's answer, a WebSocket ended at once because nothing
 * listens in the container yet), is held instead: its client stays
 * connected and what it sent is kept, a "held" event tells Python, and
 * Python's word (tn_relay_release_held) makes it retry on a new WebSocket,
 * the kept bytes first, or end as it would have. What decides when is
 * Python's (GetStatus); the engine only waits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tn_limits.h"
#include "tn_relay.h"
#include "tn_time.h"

/* pause a reader while less than two of its reads still fit (a local
 * read is at most TN_LOCAL_CHUNK, a link read TN_TLS_READ) */
#define TN_UP_LOW	(2 * TN_LOCAL_CHUNK)
#define TN_DOWN_LOW	(2 * TN_TLS_READ)

struct tn_relay *tn_relay_new(struct tn_relay_env *env, const char *peer, uint64_t id)
{
	struct tn_relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->env = env;
	r->id = id ? id : atomic_fetch_add(&env->next_id, 1) + 1;
	r->next = env->relays;
	if (r->next)
		r->next->prev = r;
	env->relays = r;
	tn_ring_init(&r->down, TN_RING_CAP);
	tn_err_clear(&r->link.err);
	snprintf(r->peer, sizeof(r->peer), "%s", peer);
	return r;
}

struct tn_relay *tn_relay_find(struct tn_relay_env *env, uint64_t id)
{
	struct tn_relay *r;

	for (r = env->relays; r; r = r->next)
		if (r->id == id && !r->is_check)
			return r;
	return NULL;
}

/* --- hold */

static int tn_relay_holding(const struct tn_relay *r)
{
	return r->env->link.cfg->hold && !r->is_check;
}

static void tn_relay_forget(struct tn_relay *r)
{
	if (r->kept)	/* what a client sends first may be a secret */
		explicit_bzero(r->kept, r->kept_len);
	free(r->kept);
	r->kept = NULL;
	r->kept_len = 0;
}

/* Keep len more bytes of the client's, if the keep stays within cap. */
static int tn_relay_keep(struct tn_relay *r, const unsigned char *in, size_t len, size_t cap)
{
	size_t had = r->kept_len;
	unsigned char *p;

	if (had + len > cap)
		return -1;
	p = malloc(had + len);	/* not realloc: the old copy is wiped */
	if (!p)
		return -1;
	if (had)
		memcpy(p, r->kept, had);
	memcpy(p + had, in, len);
	tn_relay_forget(r);
	r->kept = p;
	r->kept_len = had + len;
	return 0;
}

/* Why it failed: one record for both sides, the first reason found wins
 * (a relay holds one, not two: every connection carries it). */
static const struct tn_err *tn_relay_why(const struct tn_relay *r)
{
	return &r->link.err;
}

/* The local side failed (never for anything the server did). */
static void tn_relay_fail(struct tn_relay *r, const char *what)
{
	if (r->link.err.reason == TN_R_OK)
		TN_FAIL(&r->link.err, TN_R_INTERNAL, .detail = what);
}

/* 0 queued, -1 dropped (tn_events_push). */
static int tn_relay_emit(struct tn_relay *r, enum tn_event_kind kind)
{
	const struct tn_err *why = tn_relay_why(r);
	struct tn_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.conn_id = r->id;
	ev.bytes_up = r->link.bytes_up;
	ev.bytes_down = r->bytes_down;
	memcpy(ev.peer, r->peer, sizeof(ev.peer));
	if (kind == TN_EV_FAILED || kind == TN_EV_HELD)
		ev.err = *why;
	ev.remote_closed = kind != TN_EV_OPENED && r->link.remote_end;
	return tn_events_push(&r->env->events, &ev);
}

/* check(): hand the outcome to the waiting thread, once. */
static void tn_relay_report_check(struct tn_relay *r)
{
	struct tn_relay_env *env = r->env;

	if (!r->is_check || r->reported)
		return;
	r->reported = 1;
	if (!r->link.opened && tn_relay_why(r)->reason == TN_R_OK)
		TN_FAIL(&r->link.err, TN_R_CONNECT_CLOSED, .host = env->link.cfg->host,
			.port = env->link.cfg->port);
	pthread_mutex_lock(&env->mu);
	if (r->check_gen == env->check.gen && !env->check.done) {
		env->check.err = *tn_relay_why(r);
		env->check.done = 1;
		pthread_cond_broadcast(&env->cv);
	}
	pthread_mutex_unlock(&env->mu);
}

/* Both sides are gone (or never came): report and free. The one place
 * a relay is freed. */
static void tn_relay_finish(struct tn_relay *r)
{
	struct tn_relay_env *env = r->env;

	if (r->is_check) {
		tn_relay_report_check(r);
		if (env->check.relay == r)
			env->check.relay = NULL;
	} else {
		atomic_fetch_sub(&env->stats.open, 1);
		/* an error recorded after the upgrade (a protocol violation, a
		 * TLS failure mid-stream) is a failure the user is told about */
		if (tn_relay_why(r)->reason != TN_R_OK && !r->fail_counted)
			atomic_fetch_add(&env->stats.failures, 1);
		if (!atomic_load(&env->stopping))
			(void)tn_relay_emit(r, tn_relay_why(r)->reason != TN_R_OK ? TN_EV_FAILED : TN_EV_CLOSED);
	}
	if (r->prev)
		r->prev->next = r->next;
	else
		env->relays = r->next;
	if (r->next)
		r->next->prev = r->prev;
	tn_link_free(&r->link);
	tn_ring_free(&r->down);
	tn_relay_forget(r);
	free(r);
}

/* Count a WebSocket that never opened as a failure, once. */
static void tn_relay_link_failed(struct tn_relay *r)
{
	if (!r->fail_counted && !r->is_check)
		atomic_fetch_add(&r->env->stats.failures, 1);
	r->fail_counted = 1;
	tn_relay_report_check(r);
}

/* --- what the link tells the relay */

static void tn_relay_opened(void *ctx)
{
	struct tn_relay *r = ctx;

	if (r->is_check) {
		tn_relay_report_check(r);
		tn_link_close(&r->link, TN_WS_CLOSE_NORMAL, 0);	/* say goodbye */
		return;
	}
	r->opened_ms = tn_time_now_ms();
	(void)tn_relay_emit(r, TN_EV_OPENED);	/* a dropped one is counted */
}

/* Data payload from the server: straight to the local socket (one
 * sendmsg for every run) when nothing is queued before it, the rest into
 * the ring. */
static int tn_relay_data(void *ctx, const struct iovec *runs, int nruns)
{
	struct tn_relay *r = ctx;
	struct tn_relay_env *env = r->env;
	size_t skip = 0;
	int i;

	if (!r->heard) {	/* the server spoke: nothing will be sent again */
		r->heard = 1;
		tn_relay_forget(r);
	}
	if (!r->local)
		return 0;	/* the WebSocket is being closed behind it */
	if (!tn_ring_used(&r->down)) {
		struct msghdr mh;
		ssize_t s;

		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = (struct iovec *)runs;
		mh.msg_iovlen = (size_t)nruns;
		s = sendmsg(tn_loop_fd(r->local), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			/* the local client is gone; its watch notices on its own */
			tn_loop_want_write(r->local);
			return 0;
		}
		if (s > 0) {
			r->bytes_down += (uint64_t)s;
			atomic_fetch_add(&env->stats.bytes_down, (uint64_t)s);
			skip = (size_t)s;
		}
	}
	for (i = 0; i < nruns; i++) {	/* what the socket did not take */
		const unsigned char *p = runs[i].iov_base;
		size_t len = runs[i].iov_len, n;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		p += skip;
		len -= skip;
		skip = 0;
		n = tn_ring_write(&r->down, p, len);
		if (n == (size_t)-1 && r->link.err.reason == TN_R_OK) {	/* the ring's first use */
			tn_err_resource(&r->link.err, ENOMEM, &(const struct tn_facts){ .phase = TN_P_FRAME });
			return -1;
		}
		if (n != len) {
			tn_relay_fail(r, "relay buffer exhausted");
			return -1;
		}
	}
	if (!tn_ring_used(&r->down))
		return 0;
	if (!r->link_paused && tn_ring_space(&r->down) < TN_DOWN_LOW) {
		tn_link_pause(&r->link, 1);
		r->link_paused = 1;
	}
	tn_loop_want_write(r->local);
	return 0;
}

static void tn_relay_drained(void *ctx)
{
	struct tn_relay *r = ctx;

	if (r->local_paused && r->local && tn_link_room(&r->link) >= TN_UP_LOW) {
		tn_loop_pause(r->local, 0);
		r->local_paused = 0;
	}
}

/* The server turned the connection away before its first byte, the way a
 * restarting app does (see the top of the file). */
static int tn_relay_may_hold(const struct tn_relay *r)
{
	const struct tn_err *e = &r->link.err;

	if (!tn_relay_holding(r) || !r->local || r->heard || r->kept_over ||
	    r->holds >= TN_HOLD_TIMES_MAX || atomic_load(&r->env->stopping))
		return 0;
	switch (e->reason) {
	case TN_R_OK:	/* closed at once after its 101, not after a while */
		return r->link.opened && r->link.remote_end &&
		       tn_time_now_ms() - r->opened_ms <= TN_HOLD_WINDOW_MS;
	case TN_R_HTTP_STATUS:
		return e->status == 502 || e->status == 503;
	case TN_R_CONNECT_CLOSED:
		return 1;
	default:
		return 0;
	}
}

/* The client stays, read on (its bytes kept) so that its leaving is seen.
 * 0, and nothing held, when the "held" event finds the queue full: Python
 * would never release it. */
static int tn_relay_hold(struct tn_relay *r)
{
	if (tn_relay_emit(r, TN_EV_HELD))
		return 0;
	r->held = 1;
	r->holds++;
	r->link_paused = 0;
	if (r->local_paused && r->kept_len < TN_HOLD_KEEP_MAX) {
		tn_loop_pause(r->local, 0);
		r->local_paused = 0;
	}
	return 1;
}

static void tn_relay_link_closed(void *ctx)
{
	struct tn_relay *r = ctx;

	r->link_live = 0;
	if (tn_relay_may_hold(r) && tn_relay_hold(r))
		return;
	if (!r->link.opened)	/* it never opened: a failure, with a reason */
		tn_relay_link_failed(r);
	if (!r->local) {
		tn_relay_finish(r);
		return;
	}
	if (!atomic_load(&r->env->stopping))
		tn_loop_want_write(r->local);	/* flush, then EOF */
}

static const struct tn_link_ops tn_relay_link_ops = {
	.opened = tn_relay_opened,
	.data = tn_relay_data,
	.drained = tn_relay_drained,
	.closed = tn_relay_link_closed,
};

/* --- the local socket */

/* Held: what the client sends meanwhile is kept for the retry; past
 * HOLD_KEEP_MAX it waits in the kernel (reading stops). */
static int tn_relay_held_rx(struct tn_relay *r, const unsigned char *in, size_t len)
{
	if (tn_relay_keep(r, in, len, (size_t)-1)) {
		r->held = 0;
		tn_err_resource(&r->link.err, ENOMEM, &(const struct tn_facts){ .phase = TN_P_CONNECT });
		return -1;
	}
	if (r->kept_len >= TN_HOLD_KEEP_MAX && !r->local_paused) {
		tn_loop_pause(r->local, 1);
		r->local_paused = 1;
	}
	return 0;
}

static int tn_relay_local_rx(struct tn_relay *r, unsigned char *in, size_t len)
{
	ssize_t sent;

	if (r->held)
		return tn_relay_held_rx(r, in, len);
	if (!r->link_live)
		return 0;	/* nowhere to send it; the local side is being closed */
	/* kept before it goes: a link failing now may still be held */
	if (tn_relay_holding(r) && !r->heard && !r->kept_over &&
	    tn_relay_keep(r, in, len, TN_HOLD_KEEP_MAX)) {
		r->kept_over = 1;	/* more than can be sent again: never held */
		tn_relay_forget(r);
	}
	sent = tn_link_send(&r->link, in, len);
	if (sent < 0)
		return 0;	/* the link failed; its close ends the local side */
	if ((size_t)sent != len) {
		tn_relay_fail(r, "relay buffer exhausted");
		return -1;
	}
	if (!r->local_paused && tn_link_room(&r->link) < TN_UP_LOW) {
		tn_loop_pause(r->local, 1);
		r->local_paused = 1;
	}
	return 0;
}

static int tn_relay_local_writeable(struct tn_relay *r)
{
	struct tn_relay_env *env = r->env;
	int fd = tn_loop_fd(r->local), i;

	/* plain socket: send() directly, the ring absorbs partial writes */
	for (i = 0; i < 8; i++) {
		const unsigned char *p;
		size_t n = tn_ring_peek(&r->down, &p);
		ssize_t s;

		if (!n)
			break;
		s = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (s < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			return -1;	/* the local client is gone */
		}
		tn_ring_consume(&r->down, (size_t)s);
		r->bytes_down += (uint64_t)s;
		atomic_fetch_add(&env->stats.bytes_down, (uint64_t)s);
		if ((size_t)s < n)
			break;
	}
	if (r->link_paused && tn_ring_space(&r->down) >= TN_DOWN_LOW) {
		r->link_paused = 0;
		tn_link_pause(&r->link, 0);
	}
	if (tn_ring_used(&r->down))
		tn_loop_want_write(r->local);
	else if (!r->link_live)
		return -1;	/* container side ended: EOF to the local client now */
	return 0;
}

static int tn_relay_local_event(void *ctx, enum tn_loop_ev ev, unsigned char *in, size_t len)
{
	struct tn_relay *r = ctx;

	switch (ev) {
	case TN_LOOP_READ:
		return tn_relay_local_rx(r, in, len);
	case TN_LOOP_WRITE:
		return tn_relay_local_writeable(r);
	case TN_LOOP_TIMER:	/* now and then: return an idle ring's buffer */
		tn_ring_trim(&r->down);
		tn_loop_timer(r->local, (int64_t)r->env->link.ping_secs * 1000000);
		return 0;
	case TN_LOOP_GONE:
		r->local = NULL;
		r->local_gone = 1;
		if (r->held) {	/* its client stopped waiting: a plain close */
			r->held = 0;
			tn_err_clear(&r->link.err);
			r->link.remote_end = 0;
		}
		if (!r->link_live) {
			tn_relay_finish(r);
			return 0;
		}
		if (!atomic_load(&r->env->stopping))
			tn_link_close(&r->link, TN_WS_CLOSE_NORMAL, 1);	/* flush, then close */
		return 0;
	}
	return 0;
}

int tn_relay_start(struct tn_relay *r, int fd)
{
	struct tn_relay_env *env = r->env;

	if (fd >= 0) {
		r->local = tn_loop_adopt(env->link.loop, fd, TN_WATCH_SOCKET, tn_relay_local_event, r);
		if (!r->local) {	/* the loop closed fd */
			tn_relay_fail(r, "adopting the local connection");
			r->local_gone = 1;
			tn_relay_finish(r);
			return -1;
		}
		tn_loop_timer(r->local, (int64_t)env->link.ping_secs * 1000000);
	}
	if (!tn_link_open(&r->link, &env->link, &tn_relay_link_ops, r)) {
		r->link_live = 1;
		return 0;
	}
	/* failed before the loop watched it (DNS, refused at once): link.err says why */
	tn_relay_link_failed(r);
	if (!r->local) {
		tn_relay_finish(r);
		return -1;
	}
	tn_loop_want_write(r->local);	/* -> close: EOF */
	return -1;
}

void tn_relay_abort(struct tn_relay *r)
{
	tn_link_abort(&r->link);
}

/* One held connection: a new WebSocket, the kept bytes first, or the end
 * it was spared. */
static void tn_relay_release(struct tn_relay *r, int retry)
{
	struct tn_relay_env *env = r->env;

	if (!retry) {
		if (!r->link.opened)
			tn_relay_link_failed(r);
		tn_loop_want_write(r->local);	/* flush, then EOF */
		return;
	}
	atomic_fetch_sub(&env->stats.bytes_up, r->link.bytes_up);	/* they reached nobody */
	tn_err_clear(&r->link.err);
	if (tn_link_open(&r->link, &env->link, &tn_relay_link_ops, r)) {
		tn_relay_link_failed(r);
		tn_loop_want_write(r->local);
		return;
	}
	r->link_live = 1;
	if (r->kept_len && tn_link_send(&r->link, r->kept, r->kept_len) != (ssize_t)r->kept_len) {
		tn_err_resource(&r->link.err, ENOMEM, &(const struct tn_facts){ .phase = TN_P_CONNECT });
		tn_link_abort(&r->link);
		return;
	}
	if (r->local_paused) {
		tn_loop_pause(r->local, 0);
		r->local_paused = 0;
	}
}

void tn_relay_release_held(struct tn_relay_env *env, int retry)
{
	struct tn_relay *r;

	/* neither way frees a relay here: its end comes from the loop */
	for (r = env->relays; r; r = r->next)
		if (r->held) {
			r->held = 0;
			tn_relay_release(r, retry);
		}
}
