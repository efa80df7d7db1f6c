/*
 * tn_conn.h - the TCP side of a WebSocket: resolve, connect non-blocking
 * (to the SCM host, or to the HTTPS proxy), and the proxy's HTTP CONNECT.
 */
#ifndef TN_CONN_H
#define TN_CONN_H

#include <stddef.h>

#include "tn_config.h"
#include "tn_err.h"
#include "tn_http.h"

struct addrinfo;

struct tn_conn {
	const struct tn_config *cfg;
	struct addrinfo *ai, *next;	/* addresses left to try while connecting */
	struct tn_http_head ans;	/* the proxy's answer being collected */
};

void tn_conn_init(struct tn_conn *c, const struct tn_config *cfg);
/* Resolve and start connecting: *fd is the socket in flight. -1 with err. */
int tn_conn_start(struct tn_conn *c, int *fd, struct tn_err *err);
/* The socket *fd became writable: 1 connected; 0 this address failed and
 * *fd is a new socket in flight (the old one is the caller's to close); -1
 * with err when no address is left. */
int tn_conn_finish(struct tn_conn *c, int *fd, struct tn_err *err);
/* HTTP CONNECT to the SCM host (with the Proxy-Authorization value). */
int tn_conn_proxy_send(struct tn_conn *c, int fd, struct tn_err *err);
/* Read the proxy's answer: 1 when it said 200, 0 while incomplete, -1 with err. */
int tn_conn_proxy_rx(struct tn_conn *c, int fd, struct tn_err *err);
/* The same for bytes already read. */
int tn_conn_proxy_answer(struct tn_conn *c, const char *in, size_t len, struct tn_err *err);
void tn_conn_free(struct tn_conn *c);

#endif
