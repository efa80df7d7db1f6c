/*
 * tn_tls.c - TLS for the WebSocket's connection, and the classification of
 * what went wrong into one actionable error kind.
 *
 * OpenSSL runs directly on the socket (SSL_set_fd, non-blocking): lws
 * only tells tn_link.c when the fd is readable or writable. Why not lws'
 * TLS: its raw client connection tries to start TLS before the socket
 * exists (lws 4.1.6), and its ws client role is the slow path we avoid.
 *
 * Verification is what it was with lws: the system store, or only
 * REQUESTS_CA_BUNDLE when set; the host name checked by OpenSSL
 * (SSL_set1_host) and sent as SNI; off only when the user turned it off.
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

#include "tn_engine.h"

int tn_tls_ctx_init(struct tn_engine *eng, struct tn_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot create the TLS context");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* RELEASE_BUFFERS: an idle connection keeps no 16-64 KiB TLS buffers.
	 * PARTIAL_WRITE + MOVING_WRITE_BUFFER: a frame TLS only partly takes
	 * is finished later from the relay's own copy (tn_link.c). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* read ahead into a 64 KiB buffer: one recv() brings several records */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TN_TLS_READ);
	if (eng->cfg.verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		/* like requests: REQUESTS_CA_BUNDLE replaces the system store */
		if (eng->cfg.ca_file ?
		    SSL_CTX_load_verify_locations(ctx, eng->cfg.ca_file, NULL) != 1 :
		    SSL_CTX_set_default_verify_paths(ctx) != 1) {
			SSL_CTX_free(ctx);
			ERR_clear_error();
			if (eng->cfg.ca_file)
				return tn_err_set(err, TN_E_TLS, 0,
						  "cannot read the CA bundle %s (REQUESTS_CA_BUNDLE)",
						  eng->cfg.ca_file);
			return tn_err_set(err, TN_E_TLS, 0, "cannot load the system CA store");
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	eng->ssl_ctx = ctx;
	return 0;
}

void tn_tls_ctx_free(struct tn_engine *eng)
{
	SSL_CTX_free(eng->ssl_ctx);
	eng->ssl_ctx = NULL;
}

int tn_tls_start(struct tn_relay *r)
{
	const struct tn_config *c = &r->eng->cfg;
	unsigned char ip[16];
	int is_ip = inet_pton(AF_INET, c->host, ip) == 1 || inet_pton(AF_INET6, c->host, ip) == 1;
	SSL *ssl = SSL_new(r->eng->ssl_ctx);

	if (!ssl)
		return tn_err_set(&r->err, TN_E_INTERNAL, 0, "cannot create a TLS session");
	r->ssl = ssl;	/* tn_tls_free releases it, whatever happens below */
	if (SSL_set_fd(ssl, r->ws_fd) != 1)
		return tn_err_set(&r->err, TN_E_INTERNAL, 0, "cannot attach TLS to the socket");
	SSL_set_connect_state(ssl);
	/* SNI is for names only (RFC 6066); an address is checked as one */
	if (!is_ip && SSL_set_tlsext_host_name(ssl, c->host) != 1)
		return tn_err_set(&r->err, TN_E_INTERNAL, 0, "cannot set the TLS server name");
	if (c->verify && (is_ip ?
			  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->host) != 1 :
			  SSL_set1_host(ssl, c->host) != 1))
		return tn_err_set(&r->err, TN_E_INTERNAL, 0, "cannot set the name to verify");
	return 0;
}

/* Why the chain was refused, in the words the user can act on. */
static void tn_tls_verify_failed(struct tn_relay *r, long e)
{
	const struct tn_config *c = &r->eng->cfg;

	if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)
		tn_err_set(&r->err, TN_E_TLS, 0,
			   "the certificate of %s is issued for another host name", c->host);
	else
		tn_err_set(&r->err, TN_E_TLS, 0, "the certificate of %s is not trusted (%s)%s",
			   c->host, X509_verify_cert_error_string(e),
			   c->ca_file ? "; checked against REQUESTS_CA_BUNDLE" :
			   "; set REQUESTS_CA_BUNDLE to the CA that issued it");
}

/* A failed SSL call: the error queue is per thread, so it is read and
 * cleared here, on the service thread, before anything else runs. */
static void tn_tls_failed(struct tn_relay *r, int e)
{
	unsigned long q = ERR_get_error();
	char why[160];

	ERR_clear_error();
	if (r->err.kind != TN_OK)
		return;
	if (q)
		ERR_error_string_n(q, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "%s",
			 e == SSL_ERROR_SYSCALL ? "connection closed" : "protocol error");
	tn_err_set(&r->err, TN_E_TLS, 0, "TLS handshake with %s failed: %s", r->eng->cfg.host, why);
}

int tn_tls_handshake(struct tn_relay *r)
{
	int rc, e;
	long vr;

	ERR_clear_error();
	rc = SSL_do_handshake(r->ssl);
	if (rc == 1)
		return 1;
	e = SSL_get_error(r->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return 0;	/* POLLIN is always on for the link */
	if (e == SSL_ERROR_WANT_WRITE) {
		tn_link_want_write(r);
		return 0;
	}
	vr = SSL_get_verify_result(r->ssl);
	if (r->eng->cfg.verify && vr != X509_V_OK)
		tn_tls_verify_failed(r, vr);
	tn_tls_failed(r, e);
	return -1;
}

/*
 * A read or write failed for good. The server's orderly end - close_notify,
 * or TCP EOF at a record boundary (what a server that just closes its
 * socket gives) - leaves r->err alone: the relay reports a normal close. A
 * reset is a connection failure and anything else TLS rejected (a record
 * that does not decrypt, a truncated one) a TLS failure: those are not
 * ends the user should mistake for the container closing.
 */
static void tn_tls_io_failed(struct tn_relay *r, int e, int sys_errno, const char *doing)
{
	unsigned long q = ERR_peek_error();
	char why[160];

	ERR_clear_error();
	/* once either side sent its Close frame, however the TCP connection
	 * goes down after it is the end already agreed on, not a failure */
	if (r->err.kind != TN_OK || e == SSL_ERROR_ZERO_RETURN || r->close_sent || r->peer_closed)
		return;
	if (e == SSL_ERROR_SYSCALL && !q && !sys_errno)
		return;		/* EOF without close_notify (OpenSSL 1.1 style) */
	if (e == SSL_ERROR_SSL && ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return;		/* the same EOF, as OpenSSL 3 reports it */
	if (e == SSL_ERROR_SYSCALL && !q) {
		tn_err_set(&r->err, TN_E_CONNECT, 0, "the connection to %s broke while %s (%s)",
			   r->eng->cfg.host, doing, strerror(sys_errno));
		return;
	}
	if (q)
		ERR_error_string_n(q, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "TLS error %d", e);
	tn_err_set(&r->err, TN_E_TLS, 0, "TLS failure with %s while %s: %s", r->eng->cfg.host,
		   doing, why);
}

ssize_t tn_tls_read(struct tn_relay *r, unsigned char *buf, size_t cap)
{
	int rc, e, se;

	ERR_clear_error();
	errno = 0;	/* SSL_ERROR_SYSCALL with errno 0 is EOF */
	rc = SSL_read(r->ssl, buf, cap > 0x7fffffff ? 0x7fffffff : (int)cap);
	se = errno;
	if (rc > 0)
		return rc;
	e = SSL_get_error(r->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE) {	/* a key update wants to go out first */
		r->rx_kick = 1;
		tn_link_want_write(r);
		return 0;
	}
	tn_tls_io_failed(r, e, se, "reading");
	return -1;
}

ssize_t tn_tls_write(struct tn_relay *r, const unsigned char *p, size_t n)
{
	int rc, e, se;

	ERR_clear_error();
	errno = 0;
	rc = SSL_write(r->ssl, p, n > 0x7fffffff ? 0x7fffffff : (int)n);
	se = errno;
	if (rc > 0)
		return rc;
	e = SSL_get_error(r->ssl, rc);
	if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
		return 0;	/* the caller keeps the rest and waits for WRITEABLE */
	tn_tls_io_failed(r, e, se, "writing");
	return -1;
}

void tn_tls_free(struct tn_relay *r)
{
	SSL_free(r->ssl);	/* no close_notify: the server ends with 1011 anyway */
	r->ssl = NULL;
}

static const char *tn_scheme(struct tn_engine *eng)
{
	/* not cfg.authorization: set_authorization() may swap it meanwhile */
	return atomic_load(&eng->auth_bearer) ? "Bearer" : "Basic";
}

/* The server answered the upgrade with something other than 101. */
void tn_classify_http_status(struct tn_engine *eng, struct tn_relay *r, unsigned int status)
{
	const struct tn_config *c = &eng->cfg;

	if (status == 401 || status == 403)
		tn_err_set(&r->err, TN_E_AUTH, (int)status,
			   "%s refused the credentials (HTTP %u); %s authentication was used%s",
			   c->host, status, tn_scheme(eng),
			   tn_scheme(eng)[1] == 'a' ?
			   " - Basic auth may be disabled for this app; try a Bearer token" : "");
	else
		tn_err_set(&r->err, TN_E_HTTP, (int)status,
			   "%s answered HTTP %u to the tunnel request%s", c->host, status,
			   status == 404 ? " (is this the SCM host of a Linux app?)" :
			   status >= 500 ? " (the SCM site or the container is not ready; retry)" : "");
}
