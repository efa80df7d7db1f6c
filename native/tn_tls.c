/*
 * tn_tls.c - TLS for the WebSocket's connection (see tn_tls.h), and the
 * classification of what went wrong into one error kind.
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
		tn_err_set(err, TN_E_INTERNAL, 0, "cannot create the TLS context");
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
			tn_err_set(err, TN_E_TLS, 0, "cannot read the CA bundle %s (REQUESTS_CA_BUNDLE)",
				   ca_file);
		else
			tn_err_set(err, TN_E_TLS, 0, "cannot load the system CA store");
		return NULL;
	}
	return ctx;
}

void tn_tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

int tn_tls_start(struct tn_tls *t, SSL_CTX *ctx, int fd, const char *host, int bundle,
		 struct tn_err *err)
{
	unsigned char ip[16];
	int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
	SSL *ssl = SSL_new(ctx);

	t->host = host;
	t->verify = SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE;
	t->bundle = bundle;
	if (!ssl)
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot create a TLS session");
	t->ssl = ssl;	/* tn_tls_free releases it, whatever happens below */
	if (SSL_set_fd(ssl, fd) != 1)
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot attach TLS to the socket");
	SSL_set_connect_state(ssl);
	/* SNI is for names only (RFC 6066); an address is checked as one */
	if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1)
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot set the TLS server name");
	if (t->verify && (is_ip ?
			  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1 :
			  SSL_set1_host(ssl, host) != 1))
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot set the name to verify");
	return 0;
}

/* Why the chain was refused: the facts (what to do about it is said in Python). */
static void tn_tls_verify_failed(struct tn_tls *t, long e, struct tn_err *err)
{
	if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)
		tn_err_set(err, TN_E_TLS, 0, "the certificate of %s is issued for another host name",
			   t->host);
	else
		tn_err_set(err, TN_E_TLS, 0, "the certificate of %s is not trusted (%s)%s", t->host,
			   X509_verify_cert_error_string(e),
			   t->bundle ? "; checked against REQUESTS_CA_BUNDLE" : "");
}

/* A failed handshake: the error queue is per thread, so it is read and
 * cleared here, on the service thread, before anything else runs. */
static void tn_tls_failed(struct tn_tls *t, int e, struct tn_err *err)
{
	unsigned long q = ERR_get_error();
	long vr = SSL_get_verify_result(t->ssl);
	char why[160];

	ERR_clear_error();
	if (t->verify && vr != X509_V_OK) {
		tn_tls_verify_failed(t, vr, err);
		return;
	}
	if (q)
		ERR_error_string_n(q, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "%s",
			 e == SSL_ERROR_SYSCALL ? "connection closed" : "protocol error");
	tn_err_set(err, TN_E_TLS, 0, "TLS handshake with %s failed: %s", t->host, why);
}

enum tn_io tn_tls_handshake(struct tn_tls *t, struct tn_err *err)
{
	int rc, e;

	ERR_clear_error();
	rc = SSL_do_handshake(t->ssl);
	if (rc == 1)
		return TN_IO_DONE;
	e = SSL_get_error(t->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return TN_IO_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TN_IO_WANT_WRITE;
	tn_tls_failed(t, e, err);
	return TN_IO_ERROR;
}

/*
 * A read or write failed for good. The server's orderly end - close_notify,
 * or TCP EOF at a record boundary (what a server that just closes its
 * socket gives) - is EOF. A reset is a connection failure and anything
 * else TLS rejected (a record that does not decrypt, a truncated one) a
 * TLS failure.
 */
static enum tn_io tn_tls_io_failed(struct tn_tls *t, int e, int sys_errno, const char *doing,
				   struct tn_err *err)
{
	unsigned long q = ERR_peek_error();
	char why[160];

	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN)
		return TN_IO_EOF;
	if (e == SSL_ERROR_SYSCALL && !q && !sys_errno)
		return TN_IO_EOF;	/* EOF without close_notify (OpenSSL 1.1 style) */
	if (e == SSL_ERROR_SSL && ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return TN_IO_EOF;	/* the same EOF, as OpenSSL 3 reports it */
	if (e == SSL_ERROR_SYSCALL && !q) {
		tn_err_set(err, TN_E_CONNECT, 0, "the connection to %s broke while %s (%s)", t->host,
			   doing, strerror(sys_errno));
		return TN_IO_ERROR;
	}
	if (q)
		ERR_error_string_n(q, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "TLS error %d", e);
	tn_err_set(err, TN_E_TLS, 0, "TLS failure with %s while %s: %s", t->host, doing, why);
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
	return tn_tls_io_failed(t, e, se, "reading", err);
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
	return tn_tls_io_failed(t, e, se, "writing", err);
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
