/*
 * tn_probe.h - one HTTPS GET through libcurl with the tunnel's TLS and
 * proxy settings (GetStatus, /api/settings). Runs without the GIL.
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
	const char *proxy;	/* NULL: no proxy (the environment is not read) */
	long timeout_ms;
};

struct tn_probe_resp {
	long status;
	char *body;		/* malloc'd, NUL-terminated; caller frees */
	size_t body_len;
};

int tn_probe_get(const struct tn_probe_req *q, struct tn_probe_resp *out, struct tn_err *err);

#endif
