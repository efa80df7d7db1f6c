/*
 * tn_probe.c - HTTPS GET with libcurl for the status probes.
 *
 * The same TLS policy as the WebSocket (verified against REQUESTS_CA_BUNDLE
 * or the system store) and the same explicit proxy decision: CURLOPT_PROXY
 * is always set, so curl never reads the *_proxy variables on its own.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "tn_probe.h"

#define TN_PROBE_BODY_MAX (1024 * 1024)	/* a status answer is tiny */

struct tn_buf {
	char *p;
	size_t len;
	int overflow;
};

static size_t tn_probe_write(char *data, size_t size, size_t nmemb, void *user)
{
	struct tn_buf *b = user;
	size_t n = size * nmemb;
	char *np;

	if (b->len + n > TN_PROBE_BODY_MAX) {
		b->overflow = 1;
		return 0;
	}
	np = realloc(b->p, b->len + n + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

static char *tn_host_of(const char *url, char *out, size_t outlen)
{
	const char *h = strstr(url, "://");
	size_t n;

	h = h ? h + 3 : url;
	n = strcspn(h, "/:?#");
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, h, n);
	out[n] = '\0';
	return out;
}

static int tn_probe_error(CURL *c, CURLcode rc, const struct tn_probe_req *q,
			  const char *ebuf, struct tn_err *err)
{
	char host[256];
	long connect_code = 0;

	tn_host_of(q->url, host, sizeof(host));
	curl_easy_getinfo(c, CURLINFO_HTTP_CONNECTCODE, &connect_code);
	if (q->proxy && connect_code && connect_code != 200)
		return tn_err_set(err, TN_E_PROXY, (int)connect_code,
				  "the proxy %s refused to CONNECT to %s (HTTP %ld)",
				  q->proxy, host, connect_code);
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		return tn_err_set(err, TN_E_DNS, 0, "cannot resolve the host name %s", host);
	case CURLE_COULDNT_RESOLVE_PROXY:
		return tn_err_set(err, TN_E_PROXY, 0, "cannot resolve the proxy %s", q->proxy);
	case CURLE_COULDNT_CONNECT:
		if (q->proxy)
			return tn_err_set(err, TN_E_PROXY, 0, "cannot reach the proxy %s (for %s)",
					  q->proxy, host);
		return tn_err_set(err, TN_E_CONNECT, 0,
				  "cannot connect to %s (refused or unreachable)", host);
	case CURLE_OPERATION_TIMEDOUT:
		return tn_err_set(err, TN_E_TIMEOUT, 0, "no answer from %s within %ld ms",
				  host, q->timeout_ms);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
		if (strstr(ebuf, "subject name") || strstr(ebuf, "alternative"))
			return tn_err_set(err, TN_E_TLS, 0,
					  "the certificate of %s is issued for another host name", host);
		return tn_err_set(err, TN_E_TLS, 0, "the certificate of %s is not trusted (%s)",
				  host, ebuf[0] ? ebuf : curl_easy_strerror(rc));
	default:
		return tn_err_set(err, TN_E_CONNECT, 0, "request to %s failed: %s", host,
				  ebuf[0] ? ebuf : curl_easy_strerror(rc));
	}
}

int tn_probe_get(const struct tn_probe_req *q, struct tn_probe_resp *out, struct tn_err *err)
{
	char ebuf[CURL_ERROR_SIZE] = "", cookie[320];
	struct curl_slist *hdrs = NULL, *h;
	struct tn_buf b = { NULL, 0, 0 };
	size_t alen = strlen(q->authorization) + sizeof("Authorization: ");
	char *auth = malloc(alen);
	CURLcode rc;
	CURL *c;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	c = curl_easy_init();
	if (!c || !auth) {
		curl_easy_cleanup(c);
		free(auth);
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot start an HTTP request");
	}
	snprintf(auth, alen, "Authorization: %s", q->authorization);
	h = curl_slist_append(hdrs, auth);
	if (h)
		hdrs = h;
	if (q->instance) {
		snprintf(cookie, sizeof(cookie), "Cookie: ARRAffinity=%s", q->instance);
		h = curl_slist_append(hdrs, cookie);
		if (h)
			hdrs = h;
	}
	curl_easy_setopt(c, CURLOPT_URL, q->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "azext-webapp-tunnel");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);	/* we run on arbitrary threads */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tn_probe_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_PROXY, q->proxy ? q->proxy : "");
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, q->verify ? 1L : 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, q->verify ? 2L : 0L);
	if (q->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, q->ca_file);

	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		ret = tn_probe_error(c, rc, q, ebuf, err);
		free(b.p);
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
		out->body = b.p ? b.p : calloc(1, 1);
		out->body_len = b.len;
		if (!out->body)
			ret = tn_err_set(err, TN_E_INTERNAL, 0, "out of memory");
	}
	curl_slist_free_all(hdrs);
	explicit_bzero(auth, alen);
	free(auth);
	curl_easy_cleanup(c);
	return ret;
}
