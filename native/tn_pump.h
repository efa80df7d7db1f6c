/*
 * tn_pump.h - stdio mode: the process's standard input and output relayed
 * to one end of a socketpair, whose other end the engine adopts as one
 * local connection (tn_engine_adopt). See tn_pump.c.
 */
#ifndef TN_PUMP_H
#define TN_PUMP_H

#include <stdint.h>

#include "tn_err.h"

struct tn_pump;

/* Start the pump thread on in_fd/out_fd (not owned: never closed).
 * *peer_fd receives the other end of the socketpair (nonblocking,
 * close-on-exec), to be handed to the engine, which then owns it. */
int tn_pump_start(struct tn_pump **out, int in_fd, int out_fd, int *peer_fd, struct tn_err *err);
/* Wait up to timeout_ms for the end: 1 when done, 0 on time-out. Blocks:
 * call it with the GIL released. */
int tn_pump_wait(struct tn_pump *p, int timeout_ms);
/* Bytes read from in_fd and written to out_fd so far; never blocks. */
void tn_pump_counts(struct tn_pump *p, uint64_t *in, uint64_t *out);
/* Why the pump ended early, if it did (kind TN_OK otherwise); after done. */
void tn_pump_error(struct tn_pump *p, struct tn_err *err);
/* Wake the thread from any state, join it, free. NULL is fine. */
void tn_pump_free(struct tn_pump *p);

#endif
