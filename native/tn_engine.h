/*
 * tn_engine.h - the tunnel engine: one loop run by one service thread,
 * the listener, and the requests other threads make (start, stop, check,
 * adopt, release, set_authorization).
 *
 * Only the service thread touches the loop and the relays; other threads
 * post a request under env.mu and wake it (tn_loop_wake) while the loop
 * exists.
 */
#ifndef TN_ENGINE_H
#define TN_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tn_config.h"
#include "tn_err.h"
#include "tn_events.h"
#include "tn_listen.h"
#include "tn_loop.h"
#include "tn_relay.h"

struct tn_engine {
	struct tn_config cfg;
	struct tn_relay_env env;	/* what every relay shares: counters, events, check */
	struct tn_loop *loop;		/* NULL once stopped (under env.mu) */
	struct tn_listen listen;
	int port;		/* bound local port (0 without a listener) */
	/* start/stop, which two Python threads may call at once: under life_mu */
	pthread_mutex_t life_mu;
	pthread_t thread;
	int thread_started;
	int stopped;		/* stop() was called: start() is refused */
	atomic_int running;	/* service loop alive */
	/* cfg.authorization may be replaced by tn_engine_set_authorization()
	 * from any thread: read and swapped under auth_mu */
	pthread_mutex_t auth_mu;
	int adopt_fd;		/* tn_engine_adopt: a connected socket to relay, or -1 (env.mu) */
	uint64_t adopt_id;	/* and the connection id it was given (env.mu) */
	/* tn_engine_send_text: Text frames for the service thread to hand to
	 * their links, in order (env.mu) */
	struct tn_text *texts, *texts_tail;
	size_t texts_bytes;
	int release;		/* tn_engine_release: 0 none, else TN_RELEASE_* (env.mu) */
};

enum { TN_RELEASE_RETRY = 1, TN_RELEASE_END };

int tn_engine_create(struct tn_engine **out, struct tn_config *cfg, struct tn_err *err);
int tn_engine_start(struct tn_engine *eng, struct tn_err *err);
/* check() in three steps, so the caller can run signal handlers between
 * slices: post the request (its generation in *gen); wait for its answer
 * until deadline_ms (tn_time_now_ms) but at most slice_ms, returning 1
 * while there is none yet, else 0 or -1 with err (a time-out abandons it);
 * abandon it (its handshake is closed). */
int tn_engine_check_post(struct tn_engine *eng, uint64_t *gen, struct tn_err *err);
int tn_engine_check_wait(struct tn_engine *eng, uint64_t gen, int64_t deadline_ms, int slice_ms,
			 int timeout_ms, struct tn_err *err);
void tn_engine_check_abandon(struct tn_engine *eng, uint64_t gen);
/* New handshakes send value (taken over; the old one is wiped). Any thread. */
void tn_engine_set_authorization(struct tn_engine *eng, char *value);
/* Any thread, any number at once; idempotent. */
void tn_engine_stop(struct tn_engine *eng);
/* Relay an already-connected socket (the engine owns fd from here on, even
 * on failure); *id is its connection id (its events, send_text). */
int tn_engine_adopt(struct tn_engine *eng, int fd, uint64_t *id, struct tn_err *err);
/* A Text frame (n <= TN_FRAME_MAX) on connection id, sent once its
 * WebSocket is open, before the local data queued by then; dropped when
 * the connection is gone or ending. Any thread. */
int tn_engine_send_text(struct tn_engine *eng, uint64_t id, const char *p, size_t n,
			struct tn_err *err);
/* The connections held (cfg.hold) retry, or end as they would have. Any
 * thread; the service thread acts on the latest word. */
void tn_engine_release(struct tn_engine *eng, int retry);
/* Running and not stopping. Any thread. */
int tn_engine_running(struct tn_engine *eng);
void tn_engine_free(struct tn_engine *eng);
void tn_config_free(struct tn_config *cfg);
/* Wipe a credential string, then free it (NULL is fine). */
void tn_config_secret_free(char *s);

#endif
