/*
 * tn_probe.h - one HTTPS GET through libcurl with the tunnel's TLS and
 * proxy settings (GetStatus, /api/settings). Runs without the GIL, in
 * slices, so the caller can run Python's signal handlers in between and
 * abandon the transfer (tn_probe_free) when one raises.
 */
#ifndef TN_PROBE_H
#define TN_PROBE_H

#include <stddef.h>

#include "tn_err.h"

struct tn_probe_req {
	const char *url;
	const char *authorization;
	const char *instance;	/* ARRAffinity cookie, or NULL */
	const char *ca_file;	/* NULL: the system store */
	int verify;
	const char *proxy;	/* "host:port", or NULL: no proxy (the environment is not read) */
	const char *proxy_auth;	/* Proxy-Authorization value for CONNECT, or NULL */
	long timeout_ms;
};

struct tn_probe_resp {
	long status;
	char *body;		/* malloc'd, NUL-terminated; caller frees */
	size_t body_len;
};

struct tn_probe;

/* Set the request up (nothing is sent yet). The strings in q need not
 * outlive this call, except q->url, q->proxy and q->ca_file, the facts of
 * a failure: they must outlive the probe. */
int tn_probe_start(const struct tn_probe_req *q, struct tn_probe **out, struct tn_err *err);
/* Run the transfer for up to slice_ms: 1 when it is over, 0 when not yet. */
int tn_probe_run(struct tn_probe *p, int slice_ms);
/* Once over: 0 with out filled, or -1 with err. */
int tn_probe_result(struct tn_probe *p, struct tn_probe_resp *out, struct tn_err *err);
/* Abort the transfer if it still runs, wipe the credentials, free. NULL is fine. */
void tn_probe_free(struct tn_probe *p);

#endif
