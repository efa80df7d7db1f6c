/*
 * tn_tls.c - certificate verification and the classification of a failed
 * WebSocket connection into one actionable error kind.
 *
 * OpenSSL reports why a chain failed only inside its verify callback, so
 * the reason is captured there into the relay's tn_err; the later
 * CONNECTION_ERROR keeps it instead of lws' generic text.
 */
#include <netdb.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "tn_engine.h"

int tn_tls_verify(struct tn_engine *eng, struct tn_relay *r, void *x509_ctx, int preverify_ok)
{
	X509_STORE_CTX *ctx = x509_ctx;
	int e;

	if (!eng->cfg.verify) {
		/* the user turned verification off (and was warned) */
		X509_STORE_CTX_set_error(ctx, X509_V_OK);
		return 0;
	}
	if (preverify_ok)
		return 0;
	e = X509_STORE_CTX_get_error(ctx);
	if (r && r->err.kind == TN_OK) {
		if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)
			tn_err_set(&r->err, TN_E_TLS, 0,
				   "the certificate of %s is issued for another host name",
				   eng->cfg.host);
		else
			tn_err_set(&r->err, TN_E_TLS, 0,
				   "the certificate of %s is not trusted (%s)%s", eng->cfg.host,
				   X509_verify_cert_error_string(e),
				   eng->cfg.ca_file ? "; checked against REQUESTS_CA_BUNDLE" :
				   "; set REQUESTS_CA_BUNDLE to the CA that issued it");
	}
	return 1;	/* keep OpenSSL's verdict: the handshake fails */
}

static const char *tn_scheme(const struct tn_engine *eng)
{
	return strncasecmp(eng->cfg.authorization, "Bearer", 6) ? "Basic" : "Bearer";
}

void tn_classify_connect_error(struct tn_engine *eng, struct tn_relay *r, struct lws *wsi,
			       const char *why)
{
	const struct tn_config *c = &eng->cfg;
	unsigned int status;

	if (!why)
		why = "unknown";
	if (r->err.kind != TN_OK)
		return;		/* TLS verification already said why */

	status = lws_http_client_http_response(wsi);
	if (status == 401 || status == 403)
		tn_err_set(&r->err, TN_E_AUTH, (int)status,
			   "%s refused the credentials (HTTP %u); %s authentication was used%s",
			   c->host, status, tn_scheme(eng),
			   tn_scheme(eng)[1] == 'a' ?
			   " - Basic auth may be disabled for this app; try a Bearer token" : "");
	else if (status)
		tn_err_set(&r->err, TN_E_HTTP, (int)status,
			   "%s answered HTTP %u to the tunnel request%s", c->host, status,
			   status == 404 ? " (is this the SCM host of a Linux app?)" :
			   status >= 500 ? " (the SCM site or the container is not ready; retry)" : "");
	else if (c->proxy && (strstr(why, "proxy") || strstr(why, "getaddrinfo") ||
			      strstr(why, "Unable to connect")))
		tn_err_set(&r->err, TN_E_PROXY, 0,
			   strstr(why, "not h1") ?
			   "the proxy %s refused to CONNECT to %s:%d" :
			   "cannot reach the proxy %s (for %s:%d)", c->proxy, c->host, c->port);
	else if (strstr(why, "getaddrinfo") || strstr(why, "dns"))
		tn_err_set(&r->err, TN_E_DNS, 0, "cannot resolve the host name %s", c->host);
	else if (strstr(why, "Unable to connect") || strstr(why, "connect"))
		tn_err_set(&r->err, TN_E_CONNECT, 0, "cannot connect to %s port %d (refused or unreachable)",
			   c->host, c->port);
	else if (strcasestr(why, "ssl") || strcasestr(why, "tls"))
		tn_err_set(&r->err, TN_E_TLS, 0, "TLS handshake with %s failed: %s", c->host, why);
	else
		tn_err_set(&r->err, TN_E_CONNECT, 0, "connection to %s port %d failed: %s",
			   c->host, c->port, why);
}

/* The connect call itself failed: DNS if the name (of the proxy, when one
 * is used) does not resolve, else a refused / unreachable connection. */
void tn_classify_sync_failure(struct tn_engine *eng, struct tn_relay *r)
{
	const struct tn_config *c = &eng->cfg;
	struct addrinfo hints, *res = NULL;
	char name[256], *colon;
	int rc;

	snprintf(name, sizeof(name), "%s", c->proxy ? c->proxy : c->host);
	if (c->proxy) {
		char *at = strrchr(name, '@');

		if (at)
			memmove(name, at + 1, strlen(at + 1) + 1);
		colon = strrchr(name, ':');
		if (colon)
			*colon = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(name, NULL, &hints, &res);
	if (res)
		freeaddrinfo(res);
	if (c->proxy)
		tn_err_set(&r->err, TN_E_PROXY, 0, "cannot reach the proxy %s (for %s:%d)",
			   c->proxy, c->host, c->port);
	else if (rc)
		tn_err_set(&r->err, TN_E_DNS, 0, "cannot resolve the host name %s", c->host);
	else
		tn_err_set(&r->err, TN_E_CONNECT, 0,
			   "cannot connect to %s port %d (refused or unreachable)", c->host, c->port);
}
