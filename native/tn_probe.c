/*
 * tn_probe.c - HTTPS GET with libcurl for the status probes.
 *
 * The same TLS policy as the WebSocket (verified against REQUESTS_CA_BUNDLE
 * or the system store) and the same explicit proxy decision: CURLOPT_PROXY
 * is always set, so curl never reads the *_proxy variables on its own.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "tn_probe.h"
#include "tn_limits.h"	/* TN_PROBE_BODY_MAX: a status answer is tiny */
#include "tn_time.h"

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

struct tn_probe {
	struct tn_probe_req q;	/* url, proxy, timeout_ms: for messages */
	CURLM *multi;
	CURL *easy;
	struct curl_slist *hdrs, *proxy_hdrs;	/* credentials: wiped before freeing */
	struct tn_buf body;
	char ebuf[CURL_ERROR_SIZE];
	CURLcode rc;
	int added, done;
};

/* head + value (a header line) appended to *list; the copy curl_slist
 * keeps is wiped by tn_probe_wipe_list, the temporary one here. */
static int tn_probe_header(struct curl_slist **list, const char *head, const char *value)
{
	size_t n = strlen(head) + strlen(value) + 1;
	char *line = malloc(n);
	struct curl_slist *l = NULL;

	if (line) {
		snprintf(line, n, "%s%s", head, value);
		l = curl_slist_append(*list, line);
		explicit_bzero(line, n);
		free(line);
	}
	if (!l)
		return -1;
	*list = l;
	return 0;
}

static void tn_probe_wipe_list(struct curl_slist *list)
{
	struct curl_slist *l;

	for (l = list; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

void tn_probe_free(struct tn_probe *p)
{
	if (!p)
		return;
	if (p->added)	/* aborts a transfer still running: its socket closes */
		curl_multi_remove_handle(p->multi, p->easy);
	curl_easy_cleanup(p->easy);
	curl_multi_cleanup(p->multi);
	tn_probe_wipe_list(p->hdrs);
	tn_probe_wipe_list(p->proxy_hdrs);
	free(p->body.p);
	free(p);
}

int tn_probe_start(const struct tn_probe_req *q, struct tn_probe **out, struct tn_err *err)
{
	struct tn_probe *p = calloc(1, sizeof(*p));
	CURL *c;

	*out = NULL;
	if (!p)
		return tn_err_set(err, TN_E_RESOURCE, 0, "out of memory");
	p->q = *q;
	p->easy = c = curl_easy_init();
	p->multi = curl_multi_init();
	if (!c || !p->multi || tn_probe_header(&p->hdrs, "Authorization: ", q->authorization) ||
	    (q->instance && tn_probe_header(&p->hdrs, "Cookie: ARRAffinity=", q->instance)) ||
	    (q->proxy && q->proxy_auth &&
	     tn_probe_header(&p->proxy_hdrs, "Proxy-Authorization: ", q->proxy_auth))) {
		tn_probe_free(p);
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot start an HTTP request");
	}
	curl_easy_setopt(c, CURLOPT_URL, q->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, p->hdrs);
	/* the Authorization header goes to the server only, Proxy-Authorization
	 * to the proxy only (on CONNECT): never one to the other */
	curl_easy_setopt(c, CURLOPT_HEADEROPT, CURLHEADER_SEPARATE);
	curl_easy_setopt(c, CURLOPT_PROXYHEADER, p->proxy_hdrs);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "azext-webapp-tunnel");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);	/* we run on arbitrary threads */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, p->ebuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tn_probe_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &p->body);
	curl_easy_setopt(c, CURLOPT_PROXY, q->proxy ? q->proxy : "");
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, q->verify ? 1L : 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, q->verify ? 2L : 0L);
	if (q->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, q->ca_file);
	if (curl_multi_add_handle(p->multi, c) != CURLM_OK) {
		tn_probe_free(p);
		return tn_err_set(err, TN_E_INTERNAL, 0, "cannot start an HTTP request");
	}
	p->added = 1;
	*out = p;
	return 0;
}

/* The transfer is over when curl says so; a multi-level failure ends it too. */
static int tn_probe_step(struct tn_probe *p)
{
	int running = 0, left;
	CURLMsg *m;

	if (curl_multi_perform(p->multi, &running) != CURLM_OK) {
		p->rc = CURLE_FAILED_INIT;
		return p->done = 1;
	}
	while ((m = curl_multi_info_read(p->multi, &left)))
		if (m->msg == CURLMSG_DONE && m->easy_handle == p->easy) {
			p->rc = m->data.result;
			p->done = 1;
		}
	return p->done;
}

int tn_probe_run(struct tn_probe *p, int slice_ms)
{
	int64_t until = tn_time_now_ms() + slice_ms;

	while (!p->done && !tn_probe_step(p)) {
		int64_t left = until - tn_time_now_ms();

		if (left <= 0)
			return 0;
		/* wakes on socket activity or curl's own timers, else at `left` */
		if (curl_multi_poll(p->multi, NULL, 0, (int)left, NULL) != CURLM_OK) {
			p->rc = CURLE_FAILED_INIT;
			p->done = 1;
		}
	}
	return 1;
}

int tn_probe_result(struct tn_probe *p, struct tn_probe_resp *out, struct tn_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!p->done)
		return tn_err_set(err, TN_E_INTERNAL, 0, "the HTTP request is still running");
	if (p->rc != CURLE_OK)
		return tn_probe_error(p->easy, p->rc, &p->q, p->ebuf, err);
	curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &out->status);
	out->body = p->body.p ? p->body.p : calloc(1, 1);
	if (!out->body)
		return tn_err_set(err, TN_E_RESOURCE, 0, "out of memory");
	out->body_len = p->body.len;
	p->body.p = NULL;	/* the caller's now */
	p->body.len = 0;
	return 0;
}
