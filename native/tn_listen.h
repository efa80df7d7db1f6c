/*
 * tn_listen.h - the local listener: a real bind() (so a busy port is a
 * precise error and port 0 works), and the accept loop that hands each
 * local connection to a new relay.
 */
#ifndef TN_LISTEN_H
#define TN_LISTEN_H

#include <stdint.h>

#include "tn_err.h"
#include "tn_loop.h"
#include "tn_relay.h"

struct tn_listen {
	struct tn_relay_env *env;
	const char *addr;	/* for messages */
	int fd, port;		/* port: the bound one */
	struct tn_watch *w;	/* NULL until watched and once gone */
	int paused;		/* out of descriptors: backing off */
	int64_t told;		/* when the last "out of descriptors" event went out */
};

/* bind() and listen() on addr:port (0: the kernel picks). */
int tn_listen_open(struct tn_listen *l, struct tn_relay_env *env, const char *addr, int port,
		   struct tn_err *err);
/* Accept from the loop from now on (service thread not yet running, or on it). */
int tn_listen_watch(struct tn_listen *l, struct tn_err *err);
/* Service thread: relay one connected local socket (accepted, or adopted
 * through tn_engine_adopt). fd is owned from here on: closed on failure. */
void tn_listen_relay_fd(struct tn_relay_env *env, int fd, const char *peer, uint64_t id);

#endif
