/*
 * tn_events.h - bounded queue of per-connection events (opened / closed /
 * failed / held) from the service thread to Python.
 *
 * The producer never blocks and never allocates: when the queue is full the
 * event is counted as dropped. An eventfd wakes a Python thread waiting in
 * tn_events_wait(); it also wakes on EINTR so Ctrl+C is seen at once.
 */
#ifndef TN_EVENTS_H
#define TN_EVENTS_H

#include <pthread.h>
#include <stdint.h>

#include "tn_err.h"
#include "tn_limits.h"	/* TN_EVENTS_MAX */

enum tn_event_kind { TN_EV_OPENED = 1, TN_EV_CLOSED, TN_EV_FAILED, TN_EV_HELD };

struct tn_event {
	enum tn_event_kind kind;
	uint64_t conn_id;
	uint64_t bytes_up, bytes_down;
	int remote_closed;	/* the server ended it (close frame, EOF, reset) */
	char peer[64];
	struct tn_err err;	/* a failure's (or a hold's) reason and facts; TN_R_OK otherwise */
};

struct tn_events {
	pthread_mutex_t mu;
	struct tn_event *q;	/* TN_EVENTS_MAX slots */
	unsigned head, len;
	uint64_t dropped;
	int wake_fd;		/* eventfd */
};

int tn_events_init(struct tn_events *ev);
void tn_events_destroy(struct tn_events *ev);
/* 0 queued, -1 dropped (the queue is full: counted, never waited for). */
int tn_events_push(struct tn_events *ev, const struct tn_event *e);
/* Copies up to max events into out; returns the count. */
unsigned tn_events_drain(struct tn_events *ev, struct tn_event *out, unsigned max);
/* Wakes any waiter (used on stop too). */
void tn_events_wake(struct tn_events *ev);
/* Blocks up to timeout_ms (-1: forever) until woken or a signal arrives.
 * Returns 1 woken, 0 timed out, -1 interrupted by a signal. */
int tn_events_wait(struct tn_events *ev, int timeout_ms);

#endif
