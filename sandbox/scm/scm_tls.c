/*
 * scm_tls.c - a site's TLS context and I/O over TLS on non-blocking sockets.
 *
 * Read-ahead lets OpenSSL fetch many records per read(2); the price is that
 * decrypted bytes can wait inside OpenSSL while the socket is empty, so every
 * caller tries SSL_read before it polls, never the other way round.
 */
#include "scm.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

/*
 * How much OpenSSL reads from the socket at once, with read-ahead: two full
 * records.  More costs more than it saves: after each record OpenSSL moves
 * the rest of its buffer to the front.
 */
#define TLS_READ_BUFFER (34 * 1024)

static int
tls_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
	 const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char http11[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	/* the tunnel is an HTTP/1.1 upgrade: never agree to h2 */
	if (SSL_select_next_proto((unsigned char **)out, outlen, http11,
				  sizeof(http11) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

int
tls_site_init(struct scm_site *s, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "site %s: cannot create the TLS "
			 "listener (cert %s, key %s): %s", s->name, s->cert,
			 s->key, ERR_reason_error_string(ERR_get_error()));
		SSL_CTX_free(ctx);
		return -1;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn, NULL);
	s->tls = ctx;
	return 0;
}

/* What the socket must become for OpenSSL to go on; 0: it cannot. */
static short
tls_events(int ssl_err)
{
	return ssl_err == SSL_ERROR_WANT_READ ? POLLIN :
	       ssl_err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
}

/* Waits for events on fd; 0 ready, -1 timeout, error or no events. */
static int
tls_wait(int fd, short events, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	long long left;
	int n;

	if (!events)
		return -1;
	for (;;) {
		left = deadline - scm_now_ms();
		if (left <= 0)
			return -1;
		n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

SSL *
tls_accept(SSL_CTX *ctx, int fd, int timeout_ms)
{
	long long deadline = scm_now_ms() + timeout_ms;
	SSL *ssl = SSL_new(ctx);
	int n;

	if (!ssl || !SSL_set_fd(ssl, fd))
		goto fail;
	for (;;) {
		ERR_clear_error();
		n = SSL_accept(ssl);
		if (n == 1)
			return ssl;
		if (tls_wait(fd, tls_events(SSL_get_error(ssl, n)), deadline))
			goto fail;
	}
fail:
	/* a failed handshake (scanner, wrong CA, timeout) is the client's */
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}

/* >0 bytes; 0 the peer closed; -1 wait for *wait; -2 failed. */
ssize_t
tls_read_nb(SSL *ssl, void *buf, size_t len, short *wait)
{
	int n, e;

	ERR_clear_error();
	n = SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(ssl, n);
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	*wait = tls_events(e);
	return *wait ? -1 : -2;
}

/* >0 bytes written; -1 wait for *wait; -2 failed. */
ssize_t
tls_write_nb(SSL *ssl, const void *buf, size_t len, short *wait)
{
	int n;

	ERR_clear_error();
	n = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (n > 0)
		return n;
	*wait = tls_events(SSL_get_error(ssl, n));
	return *wait ? -1 : -2;
}

/* >0 bytes; 0 the peer closed; -1 failed or timed out. */
ssize_t
tls_read(SSL *ssl, int fd, void *buf, size_t len, int timeout_ms)
{
	long long deadline = scm_now_ms() + timeout_ms;
	ssize_t n;
	short wait;

	for (;;) {
		n = tls_read_nb(ssl, buf, len, &wait);
		if (n != -1)
			return n == -2 ? -1 : n;
		if (tls_wait(fd, wait, deadline))
			return -1;
	}
}

int
tls_write_all(SSL *ssl, int fd, const void *buf, size_t len, int timeout_ms)
{
	long long deadline = scm_now_ms() + timeout_ms;
	const unsigned char *p = buf;
	ssize_t n;
	short wait;

	while (len) {
		n = tls_write_nb(ssl, p, len, &wait);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -2 || tls_wait(fd, wait, deadline))
			return -1;
	}
	return 0;
}

/* notify: send close_notify first (never waits for it to be answered). */
void
tls_close(SSL *ssl, int fd, int notify)
{
	if (ssl) {
		if (notify) {
			ERR_clear_error();
			SSL_shutdown(ssl);
		}
		ERR_clear_error();
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
}
