/*
 * tn_tls.c - TLS for the WebSocket's connection (see tn_tls.h), and the
 * classification of what went wrong into one reason.
 *
 * OpenSSL runs directly on the socket (SSL_set_fd, non-blocking); the loop
 * only says when it is readable or writable.
 *
 * Verification: the system store, or only REQUESTS_CA_BUNDLE when set; the
 * host name checked by OpenSSL (SSL_set1_host) and sent as SNI; off only
 * when the user turned it off.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "tn_config.h"
#include "tn_tls.h"

SSL_CTX *tn_tls_ctx_new(const char *ca_file, int verify, struct tn_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		TN_FAIL(err, TN_R_INTERNAL, .detail = "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* RELEASE_BUFFERS: an idle connection keeps no TLS buffers.
	 * PARTIAL_WRITE + MOVING_WRITE_BUFFER: a frame TLS only partly takes
	 * is finished later from the link's own copy (tn_link.c). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* read ahead: one recv() brings two records */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TN_TLS_READ_AHEAD);
	if (!verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* like requests: REQUESTS_CA_BUNDLE replaces the system store */
	if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1 :
	    SSL_CTX_set_default_verify_paths(ctx) != 1) {
		SSL_CTX_free(ctx);
		ERR_clear_error();
		if (ca_file)
			TN_FAIL(err, TN_R_TLS_CA_FILE, .ca_file = ca_file);
		else
			tn_err_set(err, TN_R_TLS_CA_STORE, NULL);
		return NULL;
	}
	return ctx;
}

void tn_tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

int tn_tls_start(struct tn_tls *t, SSL_CTX *ctx, int fd, const char *host, int port, int bundle,
		 struct tn_err *err)
{
	unsigned char ip[16];
	int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
	SSL *ssl = SSL_new(ctx);

	t->host = host;
	t->port = port;
	t->verify = SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE;
	t->bundle = bundle;
	if (!ssl)
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "SSL_new");
	t->ssl = ssl;	/* tn_tls_free releases it, whatever happens below */
	if (SSL_set_fd(ssl, fd) != 1)
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "SSL_set_fd");
	SSL_set_connect_state(ssl);
	/* SNI is for names only (RFC 6066); an address is checked as one */
	if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1)
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "SSL_set_tlsext_host_name");
	if (t->verify && (is_ip ?
			  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1 :
			  SSL_set1_host(ssl, host) != 1))
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "SSL_set1_host");
	return 0;
}

/* Why the chain was refused: the facts (what to do about it is said in Python). */
static void tn_tls_verify_failed(struct tn_tls *t, long e, struct tn_err *err)
{
	if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)
		TN_FAIL(err, TN_R_TLS_WRONG_HOST, .host = t->host, .port = t->port, .phase = TN_P_TLS);
	else
		TN_FAIL(err, TN_R_TLS_UNTRUSTED, .host = t->host, .port = t->port, .phase = TN_P_TLS,
			.verify_code = (int)e, .verify_text = X509_verify_cert_error_string(e),
			.ca_bundle = t->bundle);
}

/* The server ended the connection while TLS wanted more: an orderly EOF
 * (with or without close_notify, as OpenSSL 1.1 and 3 report it). */
static int tn_tls_is_eof(int e, unsigned long q, int sys_errno)
{
	return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !q && !sys_errno) ||
	       (e == SSL_ERROR_SSL && ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
}

/* A failure of TLS itself (not of the connection under it): OpenSSL's
 * reason text is the detail. */
static void tn_tls_failure(struct tn_tls *t, enum tn_reason reason, enum tn_err_phase phase,
			   unsigned long q, struct tn_err *err)
{
	const char *why = q ? ERR_reason_error_string(q) : NULL;

	TN_FAIL(err, reason, .host = t->host, .port = t->port, .phase = phase,
		.detail = why ? why : "protocol error");
}

/* A failed handshake: the error queue is per thread, so it is read and
 * cleared here, on the service thread, before anything else runs. */
static void tn_tls_failed(struct tn_tls *t, int e, int sys_errno, struct tn_err *err)
{
	unsigned long q = ERR_peek_error();
	long vr = SSL_get_verify_result(t->ssl);

	ERR_clear_error();
	if (t->verify && vr != X509_V_OK)
		tn_tls_verify_failed(t, vr, err);
	else if (tn_tls_is_eof(e, q, sys_errno))
		TN_FAIL(err, TN_R_CONNECT_CLOSED, .host = t->host, .port = t->port, .phase = TN_P_TLS);
	else if (e == SSL_ERROR_SYSCALL && !q)
		TN_FAIL(err, TN_R_CONNECT_RESET, .host = t->host, .port = t->port, .phase = TN_P_TLS,
			.errnum = sys_errno);
	else
		tn_tls_failure(t, TN_R_TLS_HANDSHAKE, TN_P_TLS, q, err);
}

enum tn_io tn_tls_handshake(struct tn_tls *t, struct tn_err *err)
{
	int rc, e, se;

	ERR_clear_error();
	errno = 0;	/* SSL_ERROR_SYSCALL with errno 0 is EOF */
	rc = SSL_do_handshake(t->ssl);
	se = errno;
	if (rc == 1)
		return TN_IO_DONE;
	e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return TN_IO_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TN_IO_WANT_WRITE;
	tn_tls_failed(t, e, se, err);
	return TN_IO_ERROR;
}

/*
 * A read or write failed for good. The server's orderly end - close_notify,
 * or TCP EOF at a record boundary (what a server that just closes its
 * socket gives) - is EOF. A reset is a connection failure and anything
 * else TLS rejected (a record that does not decrypt, a truncated one) a
 * TLS failure.
 */
static enum tn_io tn_tls_io_failed(struct tn_tls *t, int e, int sys_errno, struct tn_err *err)
{
	unsigned long q = ERR_peek_error();

	ERR_clear_error();
	if (tn_tls_is_eof(e, q, sys_errno))
		return TN_IO_EOF;
	if (e == SSL_ERROR_SYSCALL && !q)
		TN_FAIL(err, TN_R_CONNECT_RESET, .host = t->host, .port = t->port, .phase = TN_P_FRAME,
			.errnum = sys_errno);
	else
		tn_tls_failure(t, TN_R_TLS_STREAM, TN_P_FRAME, q, err);
	return TN_IO_ERROR;
}

enum tn_io tn_tls_read(struct tn_tls *t, unsigned char *buf, size_t cap, size_t *got,
		       struct tn_err *err)
{
	int rc, e, se;

	*got = 0;
	ERR_clear_error();
	errno = 0;	/* SSL_ERROR_SYSCALL with errno 0 is EOF */
	rc = SSL_read(t->ssl, buf, cap > 0x7fffffff ? 0x7fffffff : (int)cap);
	se = errno;
	if (rc > 0) {
		*got = (size_t)rc;
		return TN_IO_DONE;
	}
	e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return TN_IO_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)	/* a key update wants to go out first */
		return TN_IO_WANT_WRITE;
	return tn_tls_io_failed(t, e, se, err);
}

enum tn_io tn_tls_write(struct tn_tls *t, const unsigned char *p, size_t n, size_t *put,
			struct tn_err *err)
{
	int rc, e, se;

	*put = 0;
	ERR_clear_error();
	errno = 0;
	rc = SSL_write(t->ssl, p, n > 0x7fffffff ? 0x7fffffff : (int)n);
	se = errno;
	if (rc > 0) {
		*put = (size_t)rc;
		return TN_IO_DONE;
	}
	e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_WRITE)
		return TN_IO_WANT_WRITE;
	if (e == SSL_ERROR_WANT_READ)
		return TN_IO_WANT_READ;
	return tn_tls_io_failed(t, e, se, err);
}

int tn_tls_pending(const struct tn_tls *t)
{
	return t->ssl && SSL_has_pending(t->ssl);
}

void tn_tls_free(struct tn_tls *t)
{
	SSL_free(t->ssl);	/* no close_notify: the server ends with 1011 anyway */
	t->ssl = NULL;
}
