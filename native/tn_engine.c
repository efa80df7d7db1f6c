/*
 * tn_engine.c - lifecycle of the tunnel engine: the loop, the one service
 * thread, and the cross-thread requests (stop, check, adopt,
 * release, set_authorization).
 *
 * The loop is single-threaded: the only call made on it from other
 * threads is tn_loop_wake(), under env.mu while eng->loop is set.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tn_engine.h"
#include "tn_time.h"
#include "tn_tls.h"
#include "tn_ws.h"

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
	free(cfg->path);
	free(cfg->ca_file);
	free(cfg->proxy);
	memset(cfg, 0, sizeof(*cfg));
}

/* The loop sizes its descriptor table from this (allocated up front, hence
 * the cap). The limit itself is the process's business: tunnel.py raises
 * it, and says so; the engine never changes it behind the user's back. */
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
	struct tn_relay_env *env = &eng->env;

	if (pthread_mutex_init(&env->mu, NULL))
		return -1;
	if (tn_time_cond_init(&env->cv))
		goto no_cv;
	if (pthread_mutex_init(&eng->life_mu, NULL))
		goto no_life;
	if (pthread_mutex_init(&eng->auth_mu, NULL))
		goto no_auth;
	if (tn_events_init(&env->events))
		goto no_events;
	return 0;
no_events:
	pthread_mutex_destroy(&eng->auth_mu);
no_auth:
	pthread_mutex_destroy(&eng->life_mu);
no_life:
	pthread_cond_destroy(&env->cv);
no_cv:
	pthread_mutex_destroy(&env->mu);
	return -1;
}

static void tn_engine_woken(void *ctx);

/* What the links share: settings, TLS, scratch buffers, keep-alive. */
static int tn_engine_link_env(struct tn_engine *eng, struct tn_err *err)
{
	struct tn_link_env *le = &eng->env.link;
	int ping = eng->cfg.ping_secs > 0 ? eng->cfg.ping_secs : 30;
	struct tn_loop_opts lo;

	if (ping > 30000)
		ping = 30000;
	le->cfg = &eng->cfg;
	le->auth_mu = &eng->auth_mu;
	le->bytes_up = &eng->env.stats.bytes_up;
	le->ping_secs = (unsigned)ping;
	/* Generous hang-up: a WebSocket paused by back-pressure cannot read
	 * its pong, and a stalled local reader must not kill the session. */
	le->hangup_secs = (unsigned)(ping + (ping < 300 ? 300 : ping));
	le->txbuf = malloc(TN_WS_HDR_MAX + TN_FRAME_MAX);
	le->rxbuf = malloc(TN_TLS_READ);
	if (!le->txbuf || !le->rxbuf)
		return tn_err_resource(err, ENOMEM, NULL);
	le->ssl_ctx = tn_tls_ctx_new(eng->cfg.ca_file, eng->cfg.verify, err);
	if (!le->ssl_ctx)
		return -1;
	memset(&lo, 0, sizeof(lo));
	lo.fd_limit = tn_fd_table_size();
	lo.read_chunk = TN_LOCAL_CHUNK;
	lo.woken = tn_engine_woken;
	lo.ctx = eng;
	eng->loop = tn_loop_new(&lo, err);
	if (!eng->loop)
		return -1;
	le->loop = eng->loop;
	return 0;
}

int tn_engine_create(struct tn_engine **out, struct tn_config *cfg, struct tn_err *err)
{
	struct tn_engine *eng;

	*out = NULL;
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return tn_err_resource(err, ENOMEM, NULL);
	eng->cfg = *cfg;	/* takes ownership of the strings */
	memset(cfg, 0, sizeof(*cfg));
	if (tn_engine_sync_init(eng)) {
		tn_config_free(&eng->cfg);	/* wipes the credentials */
		free(eng);
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "creating a mutex or the event queue");
	}
	eng->listen.fd = -1;
	eng->adopt_fd = -1;
	if (tn_engine_link_env(eng, err)) {
		tn_engine_free(eng);
		return -1;
	}
	*out = eng;
	return 0;
}

static void tn_check_fail_locked(struct tn_engine *eng, enum tn_reason reason)
{
	struct tn_check *c = &eng->env.check;

	if (c->done)
		return;
	if (reason == TN_R_RESOURCE_MEMORY)
		tn_err_resource(&c->err, ENOMEM, NULL);
	else
		tn_err_set(&c->err, reason, NULL);
	c->done = 1;
	c->requested = 0;
	pthread_cond_broadcast(&eng->env.cv);
}

static void *tn_service_main(void *arg)
{
	struct tn_engine *eng = arg;
	struct tn_loop *loop;

	while (!atomic_load(&eng->env.stopping))
		if (tn_loop_run(eng->loop) < 0)
			break;

	/* Freeing the loop closes every connection (their last events free
	 * the relays). Hide it from tn_loop_wake first. */
	atomic_store(&eng->env.stopping, 1);
	pthread_mutex_lock(&eng->env.mu);
	loop = eng->loop;
	eng->loop = NULL;
	pthread_mutex_unlock(&eng->env.mu);
	tn_loop_free(loop);
	pthread_mutex_lock(&eng->env.mu);
	tn_check_fail_locked(eng, TN_R_CLOSED_STOPPED);
	if (eng->adopt_fd >= 0) {	/* posted, never taken */
		close(eng->adopt_fd);
		eng->adopt_fd = -1;
	}
	pthread_mutex_unlock(&eng->env.mu);
	atomic_store(&eng->running, 0);
	tn_events_wake(&eng->env.events);
	return NULL;
}

static int tn_engine_start_locked(struct tn_engine *eng, struct tn_err *err)
{
	sigset_t all, old;

	if (eng->stopped)
		return tn_err_set(err, TN_R_CLOSED_STOPPED, NULL);
	if (eng->thread_started || !eng->loop)
		return tn_err_set(err, TN_R_CLOSED_STARTED, NULL);
	if (eng->cfg.bind_addr) {
		if (tn_listen_open(&eng->listen, &eng->env, eng->cfg.bind_addr, eng->cfg.bind_port,
				   err) ||
		    tn_listen_watch(&eng->listen, err))
			return -1;
		eng->port = eng->listen.port;
	}

	/* Signals belong to Python's main thread: the service thread blocks
	 * them all, so Ctrl+C interrupts the main thread's wait. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	atomic_store(&eng->running, 1);
	if (pthread_create(&eng->thread, NULL, tn_service_main, eng)) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		atomic_store(&eng->running, 0);
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "starting the service thread");
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
	if (eng->loop)
		tn_loop_wake(eng->loop);
}

/* A second caller waits on life_mu until the first has joined the thread,
 * so both return with the engine stopped and the thread joined once. */
void tn_engine_stop(struct tn_engine *eng)
{
	pthread_mutex_lock(&eng->life_mu);
	eng->stopped = 1;
	atomic_store(&eng->env.stopping, 1);
	if (eng->thread_started) {
		pthread_mutex_lock(&eng->env.mu);
		tn_wake_locked(eng);
		pthread_mutex_unlock(&eng->env.mu);
		pthread_join(eng->thread, NULL);
		eng->thread_started = 0;
	}
	pthread_mutex_unlock(&eng->life_mu);
}

int tn_engine_running(struct tn_engine *eng)
{
	return atomic_load(&eng->running) && !atomic_load(&eng->env.stopping);
}

/* Under env.mu: the service thread is there to take a request. */
static int tn_engine_accepting_locked(struct tn_engine *eng)
{
	return eng->loop && tn_engine_running(eng);
}

int tn_engine_check_post(struct tn_engine *eng, uint64_t *gen, struct tn_err *err)
{
	struct tn_check *c = &eng->env.check;

	pthread_mutex_lock(&eng->env.mu);
	if (!tn_engine_accepting_locked(eng)) {
		pthread_mutex_unlock(&eng->env.mu);
		return tn_err_set(err, TN_R_CLOSED_NOT_RUNNING, NULL);
	}
	*gen = ++c->gen;	/* an older request's handshake is closed */
	c->requested = 1;
	c->done = 0;
	tn_err_clear(&c->err);
	tn_wake_locked(eng);
	pthread_mutex_unlock(&eng->env.mu);
	return 0;
}

static void tn_check_abandon_locked(struct tn_engine *eng, uint64_t gen)
{
	struct tn_check *c = &eng->env.check;

	if (gen != c->gen)
		return;		/* already superseded */
	c->gen++;		/* a late answer is for nobody */
	c->requested = 0;
	tn_wake_locked(eng);	/* the service thread closes its handshake */
}

void tn_engine_check_abandon(struct tn_engine *eng, uint64_t gen)
{
	pthread_mutex_lock(&eng->env.mu);
	tn_check_abandon_locked(eng, gen);
	pthread_mutex_unlock(&eng->env.mu);
}

int tn_engine_check_wait(struct tn_engine *eng, uint64_t gen, int64_t deadline_ms, int slice_ms,
			 int timeout_ms, struct tn_err *err)
{
	struct tn_check *c = &eng->env.check;
	int64_t left = deadline_ms - tn_time_now_ms();
	struct timespec until = tn_time_deadline(left < 0 ? 0 : left < slice_ms ? (int)left : slice_ms);
	int rc = 0;

	pthread_mutex_lock(&eng->env.mu);
	while (gen == c->gen && !c->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&eng->env.cv, &eng->env.mu, &until);
	if (gen == c->gen && c->done) {
		*err = c->err;
		pthread_mutex_unlock(&eng->env.mu);
		return err->reason == TN_R_OK ? 0 : -1;
	}
	if (gen != c->gen) {	/* another check() took over */
		pthread_mutex_unlock(&eng->env.mu);
		return tn_err_set(err, TN_R_CLOSED_REPLACED, NULL);
	}
	if (tn_time_now_ms() < deadline_ms) {
		pthread_mutex_unlock(&eng->env.mu);
		return 1;	/* not yet: the caller runs signal handlers, then waits on */
	}
	tn_check_abandon_locked(eng, gen);
	pthread_mutex_unlock(&eng->env.mu);
	return TN_FAIL(err, TN_R_TIMEOUT_CHECK, .host = eng->cfg.host, .port = eng->cfg.port,
		       .timeout_ms = timeout_ms);
}

void tn_engine_set_authorization(struct tn_engine *eng, char *value)
{
	char *old;

	pthread_mutex_lock(&eng->auth_mu);
	old = eng->cfg.authorization;
	eng->cfg.authorization = value;
	pthread_mutex_unlock(&eng->auth_mu);
	tn_config_secret_free(old);
}

int tn_engine_adopt(struct tn_engine *eng, int fd, uint64_t *id, struct tn_err *err)
{
	pthread_mutex_lock(&eng->env.mu);
	if (!tn_engine_accepting_locked(eng)) {
		pthread_mutex_unlock(&eng->env.mu);
		close(fd);
		return tn_err_set(err, TN_R_CLOSED_NOT_RUNNING, NULL);
	}
	if (eng->adopt_fd >= 0) {
		pthread_mutex_unlock(&eng->env.mu);
		close(fd);
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "another connection is being adopted");
	}
	eng->adopt_fd = fd;	/* taken by the service thread, as an accept would be */
	eng->adopt_id = *id = atomic_fetch_add(&eng->env.next_id, 1) + 1;
	tn_wake_locked(eng);
	pthread_mutex_unlock(&eng->env.mu);
	return 0;
}

/* Service thread: a socket posted by tn_engine_adopt() becomes a relay. */
static void tn_launch_adopt(struct tn_engine *eng)
{
	uint64_t id;
	int fd;

	pthread_mutex_lock(&eng->env.mu);
	fd = eng->adopt_fd;
	id = eng->adopt_id;
	eng->adopt_fd = -1;
	pthread_mutex_unlock(&eng->env.mu);
	if (fd >= 0)
		tn_listen_relay_fd(&eng->env, fd, "stdio", id);
}

int tn_engine_send_text(struct tn_engine *eng, uint64_t id, const char *p, size_t n,
			struct tn_err *err)
{
	struct tn_text *t = malloc(sizeof(*t) + n);

	if (!t)
		return tn_err_resource(err, ENOMEM, NULL);
	t->next = NULL;
	t->conn_id = id;
	t->len = n;
	memcpy(t->data, p, n);
	pthread_mutex_lock(&eng->env.mu);
	if (!tn_engine_accepting_locked(eng) || eng->texts_bytes + n > TN_TEXTS_MAX) {
		int closed = !tn_engine_accepting_locked(eng);

		pthread_mutex_unlock(&eng->env.mu);
		free(t);
		if (closed)
			return tn_err_set(err, TN_R_CLOSED_NOT_RUNNING, NULL);
		/* a caller far ahead of the loop: memory, bounded */
		return TN_FAIL(err, TN_R_RESOURCE_MEMORY, .limit = TN_TEXTS_MAX);
	}
	if (eng->texts_tail)
		eng->texts_tail->next = t;
	else
		eng->texts = t;
	eng->texts_tail = t;
	eng->texts_bytes += n;
	tn_wake_locked(eng);
	pthread_mutex_unlock(&eng->env.mu);
	return 0;
}

static void tn_texts_free(struct tn_text *t)
{
	while (t) {
		struct tn_text *next = t->next;

		free(t);
		t = next;
	}
}

/* Service thread: posted Text frames go to their links (after the adopt
 * posted before them, so a connection's first frame finds its relay). */
static void tn_launch_texts(struct tn_engine *eng)
{
	struct tn_text *t;

	pthread_mutex_lock(&eng->env.mu);
	t = eng->texts;
	eng->texts = eng->texts_tail = NULL;
	eng->texts_bytes = 0;
	pthread_mutex_unlock(&eng->env.mu);
	while (t) {
		struct tn_text *next = t->next;
		struct tn_relay *r = tn_relay_find(&eng->env, t->conn_id);

		if (r && r->link_live)
			tn_link_text(&r->link, t);
		else
			free(t);	/* gone, or failed before its WebSocket opened */
		t = next;
	}
}

void tn_engine_release(struct tn_engine *eng, int retry)
{
	pthread_mutex_lock(&eng->env.mu);
	if (tn_engine_accepting_locked(eng)) {
		eng->release = retry ? TN_RELEASE_RETRY : TN_RELEASE_END;
		tn_wake_locked(eng);
	}
	pthread_mutex_unlock(&eng->env.mu);
}

/* Service thread: the held connections, as Python said. */
static void tn_launch_release(struct tn_engine *eng)
{
	int release;

	pthread_mutex_lock(&eng->env.mu);
	release = eng->release;
	eng->release = 0;
	pthread_mutex_unlock(&eng->env.mu);
	if (release)
		tn_relay_release_held(&eng->env, release == TN_RELEASE_RETRY);
}

/* Service thread: close the handshake of a check() nobody waits for any
 * more (abandoned on a signal or a time-out, or replaced). */
static void tn_close_stale_check(struct tn_engine *eng, uint64_t current)
{
	struct tn_relay *r = eng->env.check.relay;

	if (!r || r->check_gen == current)
		return;
	eng->env.check.relay = NULL;	/* the relay's end does not look again */
	tn_relay_abort(r);
}

/* Service thread: a check() request is waiting; launch its WebSocket. */
static void tn_launch_check(struct tn_engine *eng)
{
	struct tn_check *c = &eng->env.check;
	struct tn_relay *r;
	uint64_t gen;
	int requested;

	pthread_mutex_lock(&eng->env.mu);
	requested = c->requested;
	c->requested = 0;
	gen = c->gen;
	pthread_mutex_unlock(&eng->env.mu);
	tn_close_stale_check(eng, gen);
	if (!requested)
		return;

	r = tn_relay_new(&eng->env, "check", 0);
	if (!r) {
		pthread_mutex_lock(&eng->env.mu);
		if (gen == c->gen)
			tn_check_fail_locked(eng, TN_R_RESOURCE_MEMORY);
		pthread_mutex_unlock(&eng->env.mu);
		return;
	}
	r->is_check = 1;
	r->check_gen = gen;
	c->relay = r;
	tn_relay_start(r, -1);	/* failures are reported through the relay */
}

/* The loop's thread, after tn_loop_wake. */
static void tn_engine_woken(void *ctx)
{
	struct tn_engine *eng = ctx;

	if (atomic_load(&eng->env.stopping))
		return;
	tn_launch_check(eng);
	tn_launch_adopt(eng);
	tn_launch_texts(eng);
	tn_launch_release(eng);
}

void tn_engine_free(struct tn_engine *eng)
{
	if (!eng)
		return;
	tn_engine_stop(eng);
	tn_loop_free(eng->loop);	/* created but never started */
	eng->loop = NULL;
	pthread_cond_destroy(&eng->env.cv);
	pthread_mutex_destroy(&eng->env.mu);
	pthread_mutex_destroy(&eng->life_mu);
	pthread_mutex_destroy(&eng->auth_mu);
	tn_events_destroy(&eng->env.events);
	tn_texts_free(eng->texts);
	free(eng->env.link.txbuf);
	free(eng->env.link.rxbuf);
	tn_tls_ctx_free(eng->env.link.ssl_ctx);
	tn_config_free(&eng->cfg);
	free(eng);
}
