/*
 * scm_relay.c - the tunnel's data path: one accepted WebSocket <-> one raw
 * TCP client connection to the routed container port.
 *
 * Modelled on lws's protocol_lws_raw_proxy: one struct shared by both
 * sides, a bounded queue per direction, lws_rx_flow_control on the reading
 * side when a queue passes its high-water mark, writes only from WRITEABLE
 * callbacks (one lws_write each), and the last side to close frees.
 *
 *   up:   client WS data frames  -> queue -> raw writes to the container
 *   down: each read of container -> queue -> one binary WS message each
 *
 * Every end closes the WebSocket with 1011 "Connection failure." after the
 * down queue is flushed, as the real SCM does (PROTOCOL.md section 2).
 * Faults (drop/stall after N bytes) are read live from the site, so a
 * SIGHUP applies them to open tunnels too.
 */
#include "scm.h"

#include <stdlib.h>
#include <string.h>

#define RELAY_HIGH_WATER (256 * 1024)
#define RELAY_CLOSE_REASON "Connection failure."
/* How long a closing target may take to accept the rest of the up queue. */
#define RELAY_FLUSH_SECS 10

struct relay_chunk {
	struct relay_chunk *next;
	size_t len, cap;
	unsigned char buf[];	/* LWS_PRE headroom, then cap bytes */
};

/*
 * Client frames arrive in pieces as small as a TLS record; the up queue packs
 * them into chunks of this size so the container gets few, large writes.
 */
#define RELAY_UP_CHUNK (64 * 1024)

struct relay_queue {
	struct relay_chunk *head, *tail;
	size_t bytes;
};

enum relay_side { RELAY_WS, RELAY_TARGET };

struct relay {
	struct lws_dll2 list;		/* in relay_all */
	struct lws *ws;			/* NULL once closed */
	struct lws *target;		/* NULL until connected / once closed */
	struct scm_site *site;
	struct relay_queue up, down;
	size_t read_size;
	size_t high, low;
	unsigned long long relayed;	/* bytes admitted, both directions */

	unsigned ws_closed:1;
	unsigned target_closed:1;	/* closed, failed or never started */
	unsigned target_up:1;		/* connected */
	unsigned ws_rx_off:1;
	unsigned target_rx_off:1;
	unsigned keepalive_due:1;
	unsigned ending:1;		/* close the WS (1011) once flushed */
	unsigned dropping:1;		/* fault: close the WS without a frame */
	unsigned stalled:1;		/* fault: relay nothing more */
};

/*
 * lws 4.1 pings on its own after 300 s without a PONG and hangs up at 310 s
 * ("validity"); the real SCM does neither, and a stalled tunnel must stay
 * open.  Keep-alives are ours (keepalive_seconds), so validity is off.
 */
const lws_retry_bo_t relay_idle_policy = {
	.secs_since_valid_ping = 0,
	.secs_since_valid_hangup = 0,
};

/* Every live relay, so that shutdown can end each with 1011. */
static struct lws_dll2_owner relay_all;

static void
relay_queue_clear(struct relay_queue *q)
{
	struct relay_chunk *c, *next;

	for (c = q->head; c; c = next) {
		next = c->next;
		free(c);
	}
	memset(q, 0, sizeof(*q));
}

/*
 * Appends len bytes.  pack: fill the tail chunk first (up direction, a byte
 * stream); otherwise one chunk per call (down: one WS message per read).
 */
static int
relay_queue_push(struct relay_queue *q, const unsigned char *data, size_t len,
		 int pack)
{
	struct relay_chunk *c = q->tail;
	size_t room, cap;

	if (pack && c) {
		room = c->cap - c->len;
		if (room > len)
			room = len;
		memcpy(c->buf + LWS_PRE + c->len, data, room);
		c->len += room;
		q->bytes += room;
		data += room;
		len -= room;
	}
	if (!len)
		return 0;
	cap = pack && len < RELAY_UP_CHUNK ? RELAY_UP_CHUNK : len;
	c = malloc(sizeof(*c) + LWS_PRE + cap);
	if (!c)
		return -1;
	c->next = NULL;
	c->len = len;
	c->cap = cap;
	memcpy(c->buf + LWS_PRE, data, len);
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->bytes += len;
	return 0;
}

static void
relay_queue_pop(struct relay_queue *q)
{
	struct relay_chunk *c = q->head;

	q->head = c->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= c->len;
	free(c);
}

/* The one place a relay is freed: when neither side can call back again. */
static void
relay_release(struct relay *r)
{
	if (!r->ws_closed || !r->target_closed)
		return;
	lws_dll2_remove(&r->list);
	relay_queue_clear(&r->up);
	relay_queue_clear(&r->down);
	free(r);
}

/* Stops or resumes reading on one side; a stalled relay never resumes. */
static void
relay_flow(struct relay *r, enum relay_side side, int enable)
{
	struct lws *wsi = side == RELAY_WS ? r->ws : r->target;
	unsigned off = side == RELAY_WS ? r->ws_rx_off : r->target_rx_off;

	if (enable && r->stalled)
		return;
	if (!wsi || (side == RELAY_TARGET && !r->target_up) ||
	    off == (unsigned)!enable)
		return;
	if (lws_rx_flow_control(wsi, enable)) {
		lwsl_err("relay: rx flow control failed\n");
		return;
	}
	if (side == RELAY_WS)
		r->ws_rx_off = !enable;
	else
		r->target_rx_off = !enable;
}

static void
relay_ws_kick(struct relay *r)
{
	if (r->ws)
		lws_callback_on_writable(r->ws);
}

/* How many of len new bytes may pass, applying drop/stall faults. */
static size_t
relay_admit(struct relay *r, size_t len)
{
	const struct scm_fault *f = &r->site->fault;
	unsigned long long limit, left;

	if (r->dropping || r->stalled)
		return 0;
	if (f->kind != SCM_FAULT_DROP && f->kind != SCM_FAULT_STALL) {
		r->relayed += len;
		return len;
	}
	limit = (unsigned long long)f->value;
	left = r->relayed < limit ? limit - r->relayed : 0;
	if (len < left) {
		r->relayed += len;
		return len;
	}
	r->relayed += left;
	if (f->kind == SCM_FAULT_DROP) {
		lwsl_notice("relay: fault: dropping after %llu bytes\n",
			    r->relayed);
		r->dropping = 1;
		relay_ws_kick(r);
	} else {
		lwsl_notice("relay: fault: stalling after %llu bytes\n",
			    r->relayed);
		relay_flow(r, RELAY_WS, 0);
		relay_flow(r, RELAY_TARGET, 0);
		r->stalled = 1;
	}
	return (size_t)left;
}

/* The container side is gone (closed, refused, or never reachable). */
static void
relay_target_gone(struct relay *r)
{
	if (r->target_closed)
		return;
	r->target_closed = 1;
	r->target_up = 0;
	r->target = NULL;
	if (!r->ws_closed) {
		r->ending = 1;
		relay_ws_kick(r);
	}
	relay_release(r);
}

static void
relay_connect(struct relay *r, struct lws *ws, int port)
{
	struct lws_client_connect_info i;
	struct lws *t;

	memset(&i, 0, sizeof(i));
	i.context = lws_get_context(ws);
	i.vhost = lws_get_vhost(ws);
	i.address = SCM_TARGET_HOST;
	i.host = SCM_TARGET_HOST;
	i.origin = SCM_TARGET_HOST;
	i.port = port;
	i.path = "";
	i.method = "RAW";
	i.local_protocol_name = "scm-target";
	i.userdata = r;	/* the target wsi's user space is the relay */
	i.retry_and_idle_policy = &relay_idle_policy;
	t = lws_client_connect_via_info(&i);
	/* A synchronous failure may already have called CONNECTION_ERROR. */
	if (!t)
		relay_target_gone(r);
}

static int
relay_established(struct lws *wsi, struct scm_site *site,
		  const struct scm_route *route, void **slot)
{
	const struct scm_config *cfg = lws_context_user(lws_get_context(wsi));
	struct relay *r = calloc(1, sizeof(*r));

	if (!r)
		return -1;
	lws_dll2_add_tail(&r->list, &relay_all);
	r->ws = wsi;
	r->site = site;
	r->read_size = route->read_size ? route->read_size : SCM_DEFAULT_READ;
	r->high = RELAY_HIGH_WATER > 2 * r->read_size ? RELAY_HIGH_WATER
						       : 2 * r->read_size;
	r->low = r->high / 2;
	*slot = r;
	if (cfg->keepalive_seconds > 0)
		lws_set_timer_usecs(wsi, (lws_usec_t)cfg->keepalive_seconds *
					 LWS_USEC_PER_SEC);
	if (route->loopback_port < 0) {
		/* No such container port: "cannot reach", end at once. */
		r->target_closed = 1;
		r->ending = 1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	/* Hold client data in the socket until the target is connected. */
	relay_flow(r, RELAY_WS, 0);
	relay_connect(r, wsi, route->loopback_port);
	return 0;
}

static int
relay_ws_receive(struct relay *r, const void *in, size_t len)
{
	size_t n = relay_admit(r, len);

	if (!n || r->ending)
		return 0;	/* discarded: faulted or target gone */
	if (relay_queue_push(&r->up, in, n, 1))
		return -1;
	if (r->up.bytes >= r->high)
		relay_flow(r, RELAY_WS, 0);
	if (r->target && r->target_up)
		lws_callback_on_writable(r->target);
	return 0;
}

static int
relay_ws_writeable(struct lws *wsi, struct relay *r)
{
	const struct scm_config *cfg = lws_context_user(lws_get_context(wsi));
	unsigned char ka[LWS_PRE + 1];
	struct relay_chunk *c;

	if (r->keepalive_due) {
		r->keepalive_due = 0;
		if (lws_write(wsi, ka + LWS_PRE, 0, cfg->keepalive_pong ?
			      LWS_WRITE_PONG : LWS_WRITE_PING) < 0)
			return -1;
		if (r->down.head || r->ending || r->dropping)
			lws_callback_on_writable(wsi);
		return 0;
	}
	c = r->down.head;
	if (c) {
		if (lws_write(wsi, c->buf + LWS_PRE, c->len,
			      LWS_WRITE_BINARY) < (int)c->len)
			return -1;
		relay_queue_pop(&r->down);
		if (r->down.bytes <= r->low)
			relay_flow(r, RELAY_TARGET, 1);
		if (r->down.head || r->ending || r->dropping)
			lws_callback_on_writable(wsi);
		return 0;
	}
	if (r->dropping)
		return -1;	/* no close reason set: no close frame */
	if (r->ending) {
		lws_close_reason(wsi, 1011, (unsigned char *)RELAY_CLOSE_REASON,
				 sizeof(RELAY_CLOSE_REASON) - 1);
		return -1;
	}
	return 0;
}

static void
relay_ws_closed(struct relay *r)
{
	r->ws = NULL;
	r->ws_closed = 1;
	if (r->target) {
		/* Flush what the client sent, then close (target WRITEABLE). */
		lws_set_timeout(r->target, PENDING_TIMEOUT_USER_OK,
				RELAY_FLUSH_SECS);
		if (r->target_up)
			lws_callback_on_writable(r->target);
	}
	relay_release(r);
}

int
relay_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
		  struct scm_site *site, const struct scm_route *route,
		  void **slot, void *in, size_t len)
{
	const struct scm_config *cfg;
	struct relay *r = *slot;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		if (!site)
			return -1;
		return relay_established(wsi, site, route, slot);
	case LWS_CALLBACK_RECEIVE:
		return r ? relay_ws_receive(r, in, len) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return r ? relay_ws_writeable(wsi, r) : -1;
	case LWS_CALLBACK_TIMER:
		if (!r)
			return 0;
		cfg = lws_context_user(lws_get_context(wsi));
		r->keepalive_due = 1;
		lws_callback_on_writable(wsi);
		if (cfg->keepalive_seconds > 0)
			lws_set_timer_usecs(wsi,
					    (lws_usec_t)cfg->keepalive_seconds *
					    LWS_USEC_PER_SEC);
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		/*
		 * Answer with our 1011 instead of lws's echo of the client's
		 * code: the real SCM ends every tunnel that way.
		 */
		lws_close_reason(wsi, 1011, (unsigned char *)RELAY_CLOSE_REASON,
				 sizeof(RELAY_CLOSE_REASON) - 1);
		return -1;
	case LWS_CALLBACK_CLOSED:
		if (r) {
			*slot = NULL;
			relay_ws_closed(r);
		}
		return 0;
	default:
		return 0;
	}
}

static int
relay_target_rx(struct relay *r, const unsigned char *in, size_t len)
{
	size_t n, off, part;

	if (r->ws_closed || r->ending)
		return 0;
	n = relay_admit(r, len);
	/* One WS message per read of read_size (AppsvcTunnelBuffer). */
	for (off = 0; off < n; off += part) {
		part = n - off < r->read_size ? n - off : r->read_size;
		if (relay_queue_push(&r->down, in + off, part, 0))
			return -1;
	}
	if (r->down.bytes >= r->high)
		relay_flow(r, RELAY_TARGET, 0);
	if (n)
		relay_ws_kick(r);
	return 0;
}

static int
relay_target_writeable(struct lws *wsi, struct relay *r)
{
	struct relay_chunk *c = r->up.head;

	if (c) {
		if (lws_write(wsi, c->buf + LWS_PRE, c->len, LWS_WRITE_RAW) <
		    (int)c->len)
			return -1;
		relay_queue_pop(&r->up);
		if (r->up.bytes <= r->low)
			relay_flow(r, RELAY_WS, 1);
		if (r->up.head) {
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	/* Client gone and everything it sent is written: close after flush. */
	if (r->ws_closed)
		return lws_raw_transaction_completed(wsi);
	return 0;
}

int
relay_target_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      void *user, void *in, size_t len)
{
	struct relay *r = user;

	(void)in;
	switch (reason) {
	case LWS_CALLBACK_RAW_CONNECTED:
		if (!r)
			return -1;
		r->target = wsi;
		r->target_up = 1;
		lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
		if (r->ws_closed) {
			lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK,
					RELAY_FLUSH_SECS);
			lws_callback_on_writable(wsi);
			return 0;
		}
		if (r->stalled)
			relay_flow(r, RELAY_TARGET, 0);
		else if (r->up.bytes < r->high)
			relay_flow(r, RELAY_WS, 1);
		if (r->up.head)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_RAW_RX:
		if (!r)
			return -1;
		return relay_target_rx(r, in, len);
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (!r)
			return -1;
		return relay_target_writeable(wsi, r);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
	case LWS_CALLBACK_RAW_CLOSE:
		/* lws calls exactly one of these per target connection */
		if (r)
			relay_target_gone(r);
		return 0;
	default:
		return 0;
	}
}

static int
relay_end_one(struct lws_dll2 *d, void *user)
{
	struct relay *r = lws_container_of(d, struct relay, list);

	(void)user;
	if (!r->ws_closed) {
		r->ending = 1;
		relay_ws_kick(r);
	}
	return 0;
}

/* Shutdown: end every tunnel the usual way (flush, then close 1011). */
void
relay_end_all(void)
{
	lws_dll2_foreach_safe(&relay_all, NULL, relay_end_one);
}

/* Tunnels whose WebSocket is still open. */
size_t
relay_open_count(void)
{
	return (size_t)relay_all.count;
}
