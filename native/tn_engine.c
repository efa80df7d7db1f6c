/*
 * tn_engine.c - lifecycle of the tunnel engine: the lws context, the one
 * service thread, the protocol callback that routes every lws event, and
 * the cross-thread requests (stop, check).
 *
 * lws is single-threaded per context: the only call made on it from other
 * threads is lws_cancel_service(), under eng->mu while eng->ctx is alive.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tn_engine.h"
#include "tn_time.h"

const char *tn_kind_name(enum tn_kind kind)
{
	switch (kind) {
	case TN_OK: return "ok";
	case TN_E_AUTH: return "auth";
	case TN_E_HTTP: return "http";
	case TN_E_TLS: return "tls";
	case TN_E_DNS: return "dns";
	case TN_E_PROXY: return "proxy";
	case TN_E_CONNECT: return "connect";
	case TN_E_BIND: return "bind";
	case TN_E_TIMEOUT: return "timeout";
	case TN_E_CLOSED: return "closed";
	case TN_E_PROTOCOL: return "protocol";
	case TN_E_RESOURCE: return "resource";
	case TN_E_INTERNAL: break;
	}
	return "internal";
}

static int tn_protocol_cb(struct lws *wsi, enum lws_callback_reasons reason,
			  void *user, void *in, size_t len);

/* protocols[0] also receives WSI_DESTROY and EVENT_WAIT_CANCELLED; one
 * callback routes them all. */
static const struct lws_protocols tn_protocols[] = {
	{ "tunnel-ws", tn_protocol_cb, 0, 0, 0, NULL, 0 },
	{ "tunnel-local", tn_protocol_cb, 0, 0, 0, NULL, 0 },
	{ "tunnel-listen", tn_protocol_cb, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

void tn_config_secret_free(char *s)
{
	if (!s)
		return;
	/* the credential must not linger in freed heap memory */
	explicit_bzero(s, strlen(s));
	free(s);
}

void tn_config_free(struct tn_config *cfg)
{
	tn_config_secret_free(cfg->authorization);
	tn_config_secret_free(cfg->proxy_auth);
	free(cfg->host);
	free(cfg->bind_addr);
	free(cfg->instance);
	free(cfg->ca_file);
	free(cfg->proxy);
	memset(cfg, 0, sizeof(*cfg));
}

/* lws sizes its fd table from this (allocated up front, hence the cap).
 * The limit itself is the process's business: tunnel.py raises it, and
 * says so; the engine never changes it behind the user's back. */
static int tn_fd_table_size(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 1024;
	return rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
}

/* The locks and the event queue; all or nothing. */
static int tn_engine_sync_init(struct tn_engine *eng)
{
	if (pthread_mutex_init(&eng->mu, NULL))
		return -1;
	if (tn_time_cond_init(&eng->cv))
		goto no_cv;
	if (pthread_mutex_init(&eng->life_mu, NULL))
		goto no_life;
	if (pthread_mutex_init(&eng->auth_mu, NULL))
		goto no_auth;
	if (tn_events_init(&eng->events))
		goto no_events;
	return 0;
no_events:
	pthread_mutex_destroy(&eng->auth_mu);
no_auth:
	pthread_mutex_destroy(&eng->life_mu);
no_life:
	pthread_cond_destroy(&eng->cv);
no_cv:
	pthread_mutex_destroy(&eng->mu);
	return -1;
}

static int tn_is_bearer(const char *authorization)
{
	return !strncasecmp(authorization, "Bearer", 6);
}

int tn_engine_create(struct tn_engine **out, struct tn_config *cfg, struct tn_err *err)
{
	struct lws_context_creation_info info;
	struct tn_engine *eng;
	int ping = cfg->ping_secs > 0 ? cfg->ping_secs : 30;

	*out = NULL;
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return tn_err_set(err, TN_E_INTERNAL, 0, "out of memory");
	eng->cfg = *cfg;	/* takes ownership of the strings */
	memset(cfg, 0, sizeof(*cfg));
	if (tn_engine_sync_init(eng)) {
		tn_config_free(&eng->cfg);	/* wipes the credentials */
		free(eng);
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot create a mutex or the event queue");
	}
	atomic_store(&eng->auth_bearer, tn_is_bearer(eng->cfg.authorization));
	eng->listen_fd = -1;
	eng->adopt_fd = -1;
	if (ping > 30000)
		ping = 30000;
	eng->retry.secs_since_valid_ping = (uint16_t)ping;
	/* Generous hang-up: a WebSocket paused by back-pressure cannot read
	 * its pong, and a stalled local reader must not kill the session. */
	eng->retry.secs_since_valid_hangup = (uint16_t)(ping + (ping < 300 ? 300 : ping));

	tn_ws_seed(eng);
	eng->txbuf = malloc(TN_WS_HDR_MAX + TN_FRAME_MAX);
	eng->rxbuf = malloc(TN_TLS_READ);
	if (!eng->txbuf || !eng->rxbuf) {
		tn_engine_free(eng);
		return tn_err_set(err, TN_E_INTERNAL, 0, "out of memory");
	}
	if (tn_tls_ctx_init(eng, err)) {
		tn_engine_free(eng);
		return -1;
	}

	memset(&info, 0, sizeof(info));
	/* lws does no TLS for us (tn_tls.c does), so no SSL init here */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.fd_limit_per_thread = (unsigned int)tn_fd_table_size();
	info.pt_serv_buf_size = TN_LOCAL_CHUNK;	/* raw read size, handshake room */
	info.count_threads = 1;
	info.timeout_secs = 20;
	info.user = eng;
	eng->ctx = lws_create_context(&info);
	if (!eng->ctx) {
		tn_engine_free(eng);
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot create the libwebsockets context");
	}

	info.vhost_name = "tunnel";
	info.protocols = tn_protocols;
	eng->vh = lws_create_vhost(eng->ctx, &info);
	if (!eng->vh) {
		tn_engine_free(eng);
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot create the libwebsockets vhost");
	}
	*out = eng;
	return 0;
}

static void tn_check_fail_locked(struct tn_engine *eng, enum tn_kind kind, const char *why)
{
	if (eng->check_done)
		return;
	tn_err_set(&eng->check_err, kind, 0, "%s", why);
	eng->check_done = 1;
	eng->check_requested = 0;
	pthread_cond_broadcast(&eng->cv);
}

static void *tn_service_main(void *arg)
{
	struct tn_engine *eng = arg;

	while (!atomic_load(&eng->stopping))
		if (lws_service(eng->ctx, 0) < 0)
			break;
	tn_listen_stop(eng);

	/* Destroying the context closes every connection (their close
	 * callbacks free the relays). Hide ctx from lws_cancel_service first. */
	atomic_store(&eng->stopping, 1);
	pthread_mutex_lock(&eng->mu);
	{
		struct lws_context *ctx = eng->ctx;

		eng->ctx = NULL;
		pthread_mutex_unlock(&eng->mu);
		lws_context_destroy(ctx);
	}
	pthread_mutex_lock(&eng->mu);
	tn_check_fail_locked(eng, TN_E_CLOSED, "the tunnel was stopped");
	if (eng->adopt_fd >= 0) {	/* posted, never taken */
		close(eng->adopt_fd);
		eng->adopt_fd = -1;
	}
	pthread_mutex_unlock(&eng->mu);
	atomic_store(&eng->running, 0);
	tn_events_wake(&eng->events);
	return NULL;
}

static int tn_engine_start_locked(struct tn_engine *eng, struct tn_err *err)
{
	lws_sock_file_fd_type fd;
	sigset_t all, old;
	struct lws *lw;

	if (eng->stopped)
		return tn_err_set(err, TN_E_CLOSED, 0, "this tunnel was stopped; open a new one");
	if (eng->thread_started || !eng->ctx)
		return tn_err_set(err, TN_E_CLOSED, 0, "the tunnel was already started");
	if (eng->cfg.bind_addr) {
		if (tn_listen_open(eng->cfg.bind_addr, eng->cfg.bind_port,
				   &eng->listen_fd, &eng->port, err))
			return -1;

		/* our own socket (precise bind errors, port 0) runs in the lws loop */
		fd.filefd = eng->listen_fd;
		lw = lws_adopt_descriptor_vhost(eng->vh, LWS_ADOPT_RAW_FILE_DESC, fd,
						"tunnel-listen", NULL);
		if (!lw) {
			close(eng->listen_fd);
			eng->listen_fd = -1;
			return tn_err_set(err, TN_E_INTERNAL, 0, "cannot watch the listening socket");
		}
		/* lws owns and closes the fd from here on */
		eng->listen_wsi = lw;
	}

	/* Signals belong to Python's main thread: the service thread blocks
	 * them all, so Ctrl+C interrupts the main thread's wait. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	atomic_store(&eng->running, 1);
	if (pthread_create(&eng->thread, NULL, tn_service_main, eng)) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		atomic_store(&eng->running, 0);
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot start the service thread");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	eng->thread_started = 1;
	return 0;
}

int tn_engine_start(struct tn_engine *eng, struct tn_err *err)
{
	int rc;

	pthread_mutex_lock(&eng->life_mu);
	rc = tn_engine_start_locked(eng, err);
	pthread_mutex_unlock(&eng->life_mu);
	return rc;
}

static void tn_wake_locked(struct tn_engine *eng)
{
	if (eng->ctx)
		lws_cancel_service(eng->ctx);
}

/* A second caller waits on life_mu until the first has joined the thread,
 * so both return with the engine stopped and the thread joined once. */
void tn_engine_stop(struct tn_engine *eng)
{
	pthread_mutex_lock(&eng->life_mu);
	eng->stopped = 1;
	atomic_store(&eng->stopping, 1);
	if (eng->thread_started) {
		pthread_mutex_lock(&eng->mu);
		tn_wake_locked(eng);
		pthread_mutex_unlock(&eng->mu);
		pthread_join(eng->thread, NULL);
		eng->thread_started = 0;
	}
	pthread_mutex_unlock(&eng->life_mu);
}

int tn_engine_check_post(struct tn_engine *eng, uint64_t *gen, struct tn_err *err)
{
	pthread_mutex_lock(&eng->mu);
	if (!eng->ctx || atomic_load(&eng->stopping) || !atomic_load(&eng->running)) {
		pthread_mutex_unlock(&eng->mu);
		return tn_err_set(err, TN_E_CLOSED, 0, "the tunnel is not running");
	}
	*gen = ++eng->check_gen;	/* an older request's handshake is closed */
	eng->check_requested = 1;
	eng->check_done = 0;
	tn_err_clear(&eng->check_err);
	tn_wake_locked(eng);
	pthread_mutex_unlock(&eng->mu);
	return 0;
}

static void tn_check_abandon_locked(struct tn_engine *eng, uint64_t gen)
{
	if (gen != eng->check_gen)
		return;		/* already superseded */
	eng->check_gen++;	/* a late answer is for nobody */
	eng->check_requested = 0;
	tn_wake_locked(eng);	/* the service thread closes its handshake */
}

void tn_engine_check_abandon(struct tn_engine *eng, uint64_t gen)
{
	pthread_mutex_lock(&eng->mu);
	tn_check_abandon_locked(eng, gen);
	pthread_mutex_unlock(&eng->mu);
}

int tn_engine_check_wait(struct tn_engine *eng, uint64_t gen, int64_t deadline_ms, int slice_ms,
			 int timeout_ms, struct tn_err *err)
{
	int64_t left = deadline_ms - tn_time_now_ms();
	struct timespec until = tn_time_deadline(left < 0 ? 0 : left < slice_ms ? (int)left : slice_ms);
	int rc = 0;

	pthread_mutex_lock(&eng->mu);
	while (gen == eng->check_gen && !eng->check_done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&eng->cv, &eng->mu, &until);
	if (gen == eng->check_gen && eng->check_done) {
		*err = eng->check_err;
		pthread_mutex_unlock(&eng->mu);
		return err->kind == TN_OK ? 0 : -1;
	}
	if (gen != eng->check_gen) {	/* another check() took over */
		pthread_mutex_unlock(&eng->mu);
		return tn_err_set(err, TN_E_CLOSED, 0, "another check() replaced this one");
	}
	if (tn_time_now_ms() < deadline_ms) {
		pthread_mutex_unlock(&eng->mu);
		return 1;	/* not yet: the caller runs signal handlers, then waits on */
	}
	tn_check_abandon_locked(eng, gen);
	pthread_mutex_unlock(&eng->mu);
	return tn_err_set(err, TN_E_TIMEOUT, 0, "no answer from %s within %d ms", eng->cfg.host,
			  timeout_ms);
}

void tn_engine_set_authorization(struct tn_engine *eng, char *value)
{
	char *old;

	pthread_mutex_lock(&eng->auth_mu);
	old = eng->cfg.authorization;
	eng->cfg.authorization = value;
	atomic_store(&eng->auth_bearer, tn_is_bearer(value));
	pthread_mutex_unlock(&eng->auth_mu);
	tn_config_secret_free(old);
}

int tn_engine_adopt(struct tn_engine *eng, int fd, struct tn_err *err)
{
	pthread_mutex_lock(&eng->mu);
	if (!eng->ctx || atomic_load(&eng->stopping) || !atomic_load(&eng->running)) {
		pthread_mutex_unlock(&eng->mu);
		close(fd);
		return tn_err_set(err, TN_E_CLOSED, 0, "the tunnel is not running");
	}
	if (eng->adopt_fd >= 0) {
		pthread_mutex_unlock(&eng->mu);
		close(fd);
		return tn_err_set(err, TN_E_INTERNAL, 0, "another connection is being adopted");
	}
	eng->adopt_fd = fd;	/* taken by the service thread, as an accept would be */
	tn_wake_locked(eng);
	pthread_mutex_unlock(&eng->mu);
	return 0;
}

/* Service thread: a socket posted by tn_engine_adopt() becomes a relay. */
static void tn_launch_adopt(struct tn_engine *eng)
{
	int fd;

	pthread_mutex_lock(&eng->mu);
	fd = eng->adopt_fd;
	eng->adopt_fd = -1;
	pthread_mutex_unlock(&eng->mu);
	if (fd >= 0)
		tn_listen_relay_fd(eng, fd, "stdio");
}

/* Service thread: close the handshake of a check() nobody waits for any
 * more (abandoned on a signal or a time-out, or replaced). */
static void tn_close_stale_check(struct tn_engine *eng, uint64_t current)
{
	struct tn_relay *r = eng->check_relay;

	if (!r || r->check_gen == current)
		return;
	eng->check_relay = NULL;	/* tn_relay_finish does not look again */
	if (r->ws)
		lws_set_timeout(r->ws, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Service thread: a check() request is waiting; launch its WebSocket. */
static void tn_launch_check(struct tn_engine *eng)
{
	struct tn_relay *r;
	uint64_t gen;
	int requested;

	pthread_mutex_lock(&eng->mu);
	requested = eng->check_requested;
	eng->check_requested = 0;
	gen = eng->check_gen;
	pthread_mutex_unlock(&eng->mu);
	tn_close_stale_check(eng, gen);
	if (!requested)
		return;

	r = tn_relay_new(eng);
	if (!r) {
		pthread_mutex_lock(&eng->mu);
		if (gen == eng->check_gen)
			tn_check_fail_locked(eng, TN_E_RESOURCE, "out of memory");
		pthread_mutex_unlock(&eng->mu);
		return;
	}
	r->is_check = 1;
	r->check_gen = gen;
	eng->check_relay = r;
	tn_relay_connect(r);	/* failures are reported through the relay */
}

static int tn_protocol_cb(struct lws *wsi, enum lws_callback_reasons reason,
			  void *user, void *in, size_t len)
{
	struct tn_engine *eng = lws_context_user(lws_get_context(wsi));
	struct tn_relay *r = lws_get_opaque_user_data(wsi);

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		/* broadcast to every protocol: the request flag makes it once */
		if (!atomic_load(&eng->stopping)) {
			tn_launch_check(eng);
			tn_launch_adopt(eng);
		}
		return 0;

	case LWS_CALLBACK_RAW_RX_FILE:
		if (!r)		/* the listener; a relay's link has r */
			return tn_listen_accept(eng);
		break;

	case LWS_CALLBACK_WSI_DESTROY:
		if (wsi == eng->listen_wsi) {	/* nothing may pause it any more */
			tn_listen_stop(eng);
			eng->listen_wsi = NULL;
		}
		break;

	default:
		break;
	}
	if (!r)
		return 0;	/* adoption in progress, or not ours */
	return tn_relay_callback(wsi, reason, r, in, len);
}

void tn_engine_free(struct tn_engine *eng)
{
	if (!eng)
		return;
	tn_engine_stop(eng);
	if (eng->ctx) {	/* created but never started */
		lws_context_destroy(eng->ctx);
		eng->ctx = NULL;
	}
	pthread_cond_destroy(&eng->cv);
	pthread_mutex_destroy(&eng->mu);
	pthread_mutex_destroy(&eng->life_mu);
	pthread_mutex_destroy(&eng->auth_mu);
	tn_events_destroy(&eng->events);
	free(eng->txbuf);
	free(eng->rxbuf);
	tn_tls_ctx_free(eng);
	tn_config_free(&eng->cfg);
	free(eng);
}
