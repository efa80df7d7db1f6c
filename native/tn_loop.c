/*
 * tn_loop.c - the poller and the timers on libwebsockets (see tn_loop.h).
 *
 * Every descriptor is a raw lws descriptor: a raw *file* when its owner
 * reads it itself (lws then only reports POLLIN / POLLOUT, so OpenSSL can
 * own a socket), a raw socket when lws reads it. lws' own TLS and ws roles
 * are not used: the ws client role parses byte by byte (about 10 CPU-s per
 * GiB in lws 4.1) and the raw role starts TLS before the socket exists
 * (lws 4.1.6).
 *
 * One lws quirk is kept here so no caller sees it: the raw-file role clears
 * POLLOUT right *after* a WRITEABLE callback returns, so a write request
 * made inside it would be lost; it is made again from a zero-delay timer
 * once the handler has returned.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "tn_loop.h"

struct tn_loop {
	struct lws_context *ctx;
	struct lws_vhost *vh;
	void (*woken)(void *ctx);
	void *wctx;
};

struct tn_watch {
	struct tn_loop *loop;
	struct lws *wsi;	/* NULL once gone */
	struct lws *writing;	/* the wsi whose WRITEABLE handler runs now */
	enum tn_watch_kind kind;
	tn_loop_fn fn;
	void *ctx;
	lws_sorted_usec_list_t rearm;
	int rearm_due;
};

static void tn_loop_rearm_cb(lws_sorted_usec_list_t *sul)
{
	struct tn_watch *w = lws_container_of(sul, struct tn_watch, rearm);

	if (w->wsi)
		lws_callback_on_writable(w->wsi);
}

static int tn_loop_dispatch(struct tn_watch *w, struct lws *wsi, enum tn_loop_ev ev,
			    unsigned char *in, size_t len)
{
	int rc;

	if (ev == TN_LOOP_WRITE)
		w->writing = wsi;
	rc = w->fn(w->ctx, ev, in, len);
	w->writing = NULL;
	if (w->wsi != wsi)
		return -1;	/* tn_loop_replace: this descriptor is done */
	if (rc)
		return -1;
	if (w->rearm_due) {
		w->rearm_due = 0;
		lws_sul_schedule(w->loop->ctx, 0, &w->rearm, tn_loop_rearm_cb, 1);
	}
	return 0;
}

static int tn_loop_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		      void *in, size_t len)
{
	struct tn_watch *w = lws_get_opaque_user_data(wsi);

	(void)user;
	if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
		struct tn_loop *loop = lws_context_user(lws_get_context(wsi));

		if (loop && loop->woken)
			loop->woken(loop->wctx);
		return 0;
	}
	if (!w || w->wsi != wsi)
		return 0;	/* adoption in progress, or a replaced descriptor */
	switch (reason) {
	case LWS_CALLBACK_RAW_RX:
		return tn_loop_dispatch(w, wsi, TN_LOOP_READ, in, len);
	case LWS_CALLBACK_RAW_RX_FILE:
		return tn_loop_dispatch(w, wsi, TN_LOOP_READ, NULL, 0);
	case LWS_CALLBACK_RAW_WRITEABLE:
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		return tn_loop_dispatch(w, wsi, TN_LOOP_WRITE, NULL, 0);
	case LWS_CALLBACK_TIMER:
		return tn_loop_dispatch(w, wsi, TN_LOOP_TIMER, NULL, 0);
	case LWS_CALLBACK_WSI_DESTROY:
		lws_sul_cancel(&w->rearm);
		w->wsi = NULL;
		w->fn(w->ctx, TN_LOOP_GONE, NULL, 0);
		free(w);
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols tn_loop_protocols[] = {
	{ "tunnel", tn_loop_cb, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

struct tn_loop *tn_loop_new(const struct tn_loop_opts *o, struct tn_err *err)
{
	struct lws_context_creation_info info;
	struct tn_loop *loop = calloc(1, sizeof(*loop));

	if (!loop) {
		tn_err_resource(err, ENOMEM, NULL);
		return NULL;
	}
	loop->woken = o->woken;
	loop->wctx = o->ctx;
	memset(&info, 0, sizeof(info));
	/* lws does no TLS here (tn_tls.c does), so no SSL init */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.fd_limit_per_thread = (unsigned int)o->fd_limit;
	info.pt_serv_buf_size = (unsigned int)o->read_chunk;
	info.count_threads = 1;
	info.timeout_secs = 20;
	info.user = loop;
	loop->ctx = lws_create_context(&info);
	if (!loop->ctx) {
		free(loop);
		TN_FAIL(err, TN_R_INTERNAL, .detail = "lws_create_context");
		return NULL;
	}
	info.vhost_name = "tunnel";
	info.protocols = tn_loop_protocols;
	loop->vh = lws_create_vhost(loop->ctx, &info);
	if (!loop->vh) {
		lws_context_destroy(loop->ctx);
		free(loop);
		TN_FAIL(err, TN_R_INTERNAL, .detail = "lws_create_vhost");
		return NULL;
	}
	return loop;
}

int tn_loop_run(struct tn_loop *loop)
{
	return lws_service(loop->ctx, 0);
}

void tn_loop_wake(struct tn_loop *loop)
{
	lws_cancel_service(loop->ctx);
}

void tn_loop_free(struct tn_loop *loop)
{
	if (!loop)
		return;
	lws_context_destroy(loop->ctx);
	free(loop);
}

int64_t tn_loop_now_us(void)
{
	return (int64_t)lws_now_usecs();
}

static int tn_loop_verbose;

/* lws never logs header values at the levels enabled here */
static void tn_loop_emit(int level, const char *line)
{
	(void)level;
	if (tn_loop_verbose)
		fputs(line, stderr);
}

void tn_loop_log(int verbose)
{
	tn_loop_verbose = verbose;
	lws_set_log_level(verbose ? (LLL_ERR | LLL_WARN | LLL_NOTICE) : LLL_ERR, tn_loop_emit);
}

static struct lws *tn_loop_adopt_wsi(struct tn_loop *loop, int fd, enum tn_watch_kind kind)
{
	lws_sock_file_fd_type d;
	struct lws *wsi;

	if (kind == TN_WATCH_FILE) {
		d.filefd = fd;
		wsi = lws_adopt_descriptor_vhost(loop->vh, LWS_ADOPT_RAW_FILE_DESC, d, "tunnel", NULL);
		if (!wsi)
			close(fd);
		return wsi;
	}
	d.sockfd = fd;
	return lws_adopt_descriptor_vhost(loop->vh, LWS_ADOPT_SOCKET, d, "tunnel", NULL);	/* closes fd on failure */
}

struct tn_watch *tn_loop_adopt(struct tn_loop *loop, int fd, enum tn_watch_kind kind,
			       tn_loop_fn fn, void *ctx)
{
	struct tn_watch *w = calloc(1, sizeof(*w));

	if (!w) {
		close(fd);
		return NULL;
	}
	w->loop = loop;
	w->kind = kind;
	w->fn = fn;
	w->ctx = ctx;
	w->wsi = tn_loop_adopt_wsi(loop, fd, kind);
	if (!w->wsi) {
		free(w);
		return NULL;
	}
	lws_set_opaque_user_data(w->wsi, w);
	return w;
}

int tn_loop_replace(struct tn_watch *w, int fd)
{
	struct lws *wsi = tn_loop_adopt_wsi(w->loop, fd, w->kind);

	if (!wsi)
		return -1;
	lws_set_opaque_user_data(w->wsi, NULL);
	w->wsi = wsi;
	lws_set_opaque_user_data(wsi, w);
	return 0;
}

int tn_loop_fd(const struct tn_watch *w)
{
	return w->wsi ? (int)lws_get_socket_fd(w->wsi) : -1;
}

void tn_loop_want_write(struct tn_watch *w)
{
	if (!w->wsi)
		return;
	if (w->kind == TN_WATCH_FILE && w->writing == w->wsi)
		w->rearm_due = 1;
	else
		lws_callback_on_writable(w->wsi);
}

void tn_loop_pause(struct tn_watch *w, int paused)
{
	if (w->wsi)
		lws_rx_flow_control(w->wsi, !paused);
}

void tn_loop_timer(struct tn_watch *w, int64_t usecs)
{
	if (w->wsi)
		lws_set_timer_usecs(w->wsi, usecs ? (lws_usec_t)usecs : LWS_SET_TIMER_USEC_CANCEL);
}

void tn_loop_deadline(struct tn_watch *w, int secs)
{
	if (w->wsi)
		lws_set_timeout(w->wsi, secs ? PENDING_TIMEOUT_USER_OK : NO_PENDING_TIMEOUT, secs);
}

void tn_loop_kill(struct tn_watch *w)
{
	if (w->wsi)
		lws_set_timeout(w->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}
