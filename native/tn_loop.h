/*
 * tn_loop.h - the poller and the timers: the only seam to libwebsockets.
 *
 * One loop per engine, run by one thread; every call here except
 * tn_loop_wake() is made on that thread. A watch is one descriptor in the
 * loop with the function that handles its events; the loop owns the
 * descriptor and the watch from adoption on, and frees both after the
 * watch's last event, TN_LOOP_GONE. A handler returning -1 closes its watch.
 */
#ifndef TN_LOOP_H
#define TN_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "tn_err.h"

struct tn_loop;
struct tn_watch;

enum tn_loop_ev {
	TN_LOOP_READ,	/* readable; for a TN_WATCH_SOCKET, in/len hold what the loop read */
	TN_LOOP_WRITE,	/* writable, after tn_loop_want_write */
	TN_LOOP_TIMER,	/* the watch's timer (tn_loop_timer) fired */
	TN_LOOP_GONE,	/* the last event: the descriptor is closed, the watch freed after */
};

enum tn_watch_kind {
	TN_WATCH_FILE,		/* the owner reads and writes the descriptor itself */
	TN_WATCH_SOCKET,	/* the loop reads it (TN_LOCAL_CHUNK at a time); the owner writes */
};

typedef int (*tn_loop_fn)(void *ctx, enum tn_loop_ev ev, unsigned char *in, size_t len);

struct tn_loop_opts {
	int fd_limit;		/* size of the descriptor table */
	size_t read_chunk;	/* one read of a TN_WATCH_SOCKET */
	void (*woken)(void *ctx);	/* on the loop's thread after tn_loop_wake */
	void *ctx;
};

struct tn_loop *tn_loop_new(const struct tn_loop_opts *o, struct tn_err *err);
/* One turn: wait for events and handle them. <0: the loop cannot go on. */
int tn_loop_run(struct tn_loop *loop);
/* Any thread, while the loop exists: run `woken` on the loop's thread soon. */
void tn_loop_wake(struct tn_loop *loop);
/* Closes every watch (each gets TN_LOOP_GONE), then frees the loop. */
void tn_loop_free(struct tn_loop *loop);
int64_t tn_loop_now_us(void);
/* Library diagnostics to stderr: errors only, or (verbose) warnings and notices too. */
void tn_loop_log(int verbose);

/* Watch fd (owned from here on, closed on failure too). NULL on failure. */
struct tn_watch *tn_loop_adopt(struct tn_loop *loop, int fd, enum tn_watch_kind kind,
			       tn_loop_fn fn, void *ctx);
/* The same watch on a new descriptor (the old one is closed once the
 * handler running now returns). -1: fd closed, the watch unchanged. */
int tn_loop_replace(struct tn_watch *w, int fd);
int tn_loop_fd(const struct tn_watch *w);
/* TN_LOOP_WRITE once the descriptor is writable; safe from any handler,
 * its own watch's TN_LOOP_WRITE included. */
void tn_loop_want_write(struct tn_watch *w);
/* Stop (1) or resume (0) reading. */
void tn_loop_pause(struct tn_watch *w, int paused);
/* TN_LOOP_TIMER after usecs (0: cancel). */
void tn_loop_timer(struct tn_watch *w, int64_t usecs);
/* Close the watch unless it is done within secs (0: no deadline). */
void tn_loop_deadline(struct tn_watch *w, int secs);
/* Close it soon, from outside its handler. */
void tn_loop_kill(struct tn_watch *w);

#endif
