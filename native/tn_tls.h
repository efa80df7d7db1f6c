/*
 * tn_tls.h - TLS on one non-blocking socket: an I/O adapter. Every call
 * says what happened (done / want-read / want-write / eof / error) and
 * never acts on it; the caller polls, retries or ends the connection.
 */
#ifndef TN_TLS_H
#define TN_TLS_H

#include <stddef.h>

#include "tn_err.h"

struct ssl_ctx_st;
struct ssl_st;

enum tn_io {
	TN_IO_DONE,		/* progress: bytes moved, or the handshake finished */
	TN_IO_WANT_READ,	/* nothing until the socket is readable */
	TN_IO_WANT_WRITE,	/* nothing until the socket is writable */
	TN_IO_EOF,		/* the server's orderly end (close_notify, or EOF at a record boundary) */
	TN_IO_ERROR,		/* err says why: a connect_* or tls_* reason */
};

struct tn_tls {
	struct ssl_st *ssl;	/* NULL until tn_tls_start */
	const char *host;	/* for the facts of a failure; outlives the session */
	int port;
	int verify, bundle;	/* checking the peer; against REQUESTS_CA_BUNDLE */
};

/* The settings every session shares: TLS 1.2+, the system store or only
 * ca_file, no verification only when verify is 0. NULL with err. */
struct ssl_ctx_st *tn_tls_ctx_new(const char *ca_file, int verify, struct tn_err *err);
void tn_tls_ctx_free(struct ssl_ctx_st *ctx);

/* bundle: ctx checks against REQUESTS_CA_BUNDLE (a fact of a failure). */
int tn_tls_start(struct tn_tls *t, struct ssl_ctx_st *ctx, int fd, const char *host, int port,
		 int bundle, struct tn_err *err);
enum tn_io tn_tls_handshake(struct tn_tls *t, struct tn_err *err);
/* DONE with *got > 0 bytes read, else nothing read. */
enum tn_io tn_tls_read(struct tn_tls *t, unsigned char *buf, size_t cap, size_t *got,
		       struct tn_err *err);
/* DONE with *put > 0 bytes taken, else nothing taken. After a WANT, the
 * next call must offer the same bytes first (OpenSSL's retry rule). */
enum tn_io tn_tls_write(struct tn_tls *t, const unsigned char *p, size_t n, size_t *put,
			struct tn_err *err);
/* Decrypted bytes OpenSSL holds that poll() cannot see. */
int tn_tls_pending(const struct tn_tls *t);
void tn_tls_free(struct tn_tls *t);

#endif
