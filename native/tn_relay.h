/*
 * tn_relay.h - one local TCP connection relayed over one WebSocket (a
 * tn_link), and what all relays share: counters, the event queue, the
 * check() hand-over.
 */
#ifndef TN_RELAY_H
#define TN_RELAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tn_err.h"
#include "tn_events.h"
#include "tn_link.h"
#include "tn_loop.h"
#include "tn_ring.h"

struct tn_stats {
	atomic_uint_fast64_t open, total, bytes_up, bytes_down, failures;
};

/* The one outstanding check() request; under tn_relay_env.mu but relay,
 * which only the service thread touches. */
struct tn_check {
	uint64_t gen;		/* bumped per request */
	int requested;		/* the service thread should launch one */
	int done;		/* err is the answer for gen */
	struct tn_err err;
	struct tn_relay *relay;	/* the handshake running (service thread only) */
};

struct tn_relay_env {
	struct tn_link_env link;
	struct tn_stats stats;
	struct tn_events events;
	atomic_int stopping;	/* the loop is going away: ask nothing of it */
	atomic_uint_fast64_t next_id;	/* adopt() takes one from another thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* check.done */
	struct tn_check check;
	struct tn_relay *relays;	/* every live relay (service thread only) */
};

struct tn_relay {
	struct tn_relay_env *env;
	struct tn_relay *prev, *next;	/* env->relays */
	struct tn_watch *local;	/* the local socket, NULL once gone (or for a check) */
	struct tn_link link;
	struct tn_ring down;	/* ws -> local */
	uint64_t id;
	uint64_t check_gen;	/* is_check: which request this answers */
	uint64_t bytes_down;
	unsigned char *kept;	/* hold: the client's bytes until the server's first (wiped when freed) */
	size_t kept_len;
	unsigned holds;		/* times held */
	int64_t opened_ms;	/* when its WebSocket last opened (tn_time_now_ms) */
	unsigned is_check:1, link_live:1, local_gone:1, local_paused:1, link_paused:1,
		 reported:1, fail_counted:1, heard:1, kept_over:1, held:1;
	char peer[64];
};

/* id 0: the next one. */
struct tn_relay *tn_relay_new(struct tn_relay_env *env, const char *peer, uint64_t id);
/* The live relay of a local connection, or NULL. */
struct tn_relay *tn_relay_find(struct tn_relay_env *env, uint64_t id);
/* Relay local socket fd (owned from here on), or with fd -1 run the
 * handshake alone (a check). Failures are reported through the relay,
 * which frees itself; -1 says it already did. */
int tn_relay_start(struct tn_relay *r, int fd);
/* Close the relay's WebSocket now (a check nobody waits for). */
void tn_relay_abort(struct tn_relay *r);
/* Every connection held retries, its kept bytes first on a new WebSocket,
 * or (retry 0) ends as it would have without hold. Service thread. */
void tn_relay_release_held(struct tn_relay_env *env, int retry);

#endif
