/*
 * tn_err.h - the plain C error record every native layer fills.
 *
 * Native threads never touch a PyObject: they describe a failure here
 * (kind + HTTP status + one line of text) and tn_module.c turns it into a
 * Python exception only after it holds the GIL again (the _ssl.c model).
 * The text never contains the Authorization value: nothing that formats a
 * tn_err is ever given it.
 */
#ifndef TN_ERR_H
#define TN_ERR_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>

enum tn_kind {
	TN_OK = 0,
	TN_E_AUTH,	/* 401/403 from the endpoint */
	TN_E_HTTP,	/* any other non-101 / unexpected status */
	TN_E_TLS,	/* certificate untrusted or for another host */
	TN_E_DNS,	/* host name does not resolve */
	TN_E_PROXY,	/* proxy unreachable or refused CONNECT */
	TN_E_CONNECT,	/* TCP refused / unreachable / reset */
	TN_E_BIND,	/* local port busy or address unusable */
	TN_E_TIMEOUT,	/* deadline passed */
	TN_E_CLOSED,	/* the engine is not running */
	TN_E_PROTOCOL,	/* the server broke RFC 6455 after the upgrade */
	TN_E_INTERNAL,	/* library failure */
	TN_E_RESOURCE,	/* out of file descriptors or memory */
};

struct tn_err {
	enum tn_kind kind;
	int status;		/* HTTP status when known, else 0 */
	char msg[320];
};

static inline void tn_err_clear(struct tn_err *e)
{
	e->kind = TN_OK;
	e->status = 0;
	e->msg[0] = '\0';
}

/* Fill e (first failure wins unless it is still TN_OK). Returns -1 so call
 * sites can `return tn_err_set(...)`. */
static inline int __attribute__((format(printf, 4, 5)))
tn_err_set(struct tn_err *e, enum tn_kind kind, int status, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return -1;
	e->kind = kind;
	e->status = status;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* Out of descriptors: say which limit was hit, with the number, so the
 * user knows what to raise (ulimit -n). `doing` finishes the sentence. */
static inline int tn_err_set_fds(struct tn_err *e, int errnum, const char *doing)
{
	struct rlimit rl;

	if (errnum == ENFILE)
		return tn_err_set(e, TN_E_RESOURCE, 0,
				  "out of file descriptors (ENFILE; the system's file table is full) %s",
				  doing);
	if (getrlimit(RLIMIT_NOFILE, &rl))
		rl.rlim_cur = 0;
	return tn_err_set(e, TN_E_RESOURCE, 0,
			  "out of file descriptors (EMFILE; open-file limit %llu) %s",
			  (unsigned long long)rl.rlim_cur, doing);
}

static inline int tn_err_is_fds(int errnum)
{
	return errnum == EMFILE || errnum == ENFILE;
}

static inline const char *tn_kind_name(enum tn_kind kind)
{
	switch (kind) {
	case TN_OK: return "ok";
	case TN_E_AUTH: return "auth";
	case TN_E_HTTP: return "http";
	case TN_E_TLS: return "tls";
	case TN_E_DNS: return "dns";
	case TN_E_PROXY: return "proxy";
	case TN_E_CONNECT: return "connect";
	case TN_E_BIND: return "bind";
	case TN_E_TIMEOUT: return "timeout";
	case TN_E_CLOSED: return "closed";
	case TN_E_PROTOCOL: return "protocol";
	case TN_E_RESOURCE: return "resource";
	case TN_E_INTERNAL: break;
	}
	return "internal";
}

#endif
