/*
 * tn_probe.c - HTTPS GET with libcurl for the status probes.
 *
 * The same TLS policy as the WebSocket (verified against REQUESTS_CA_BUNDLE
 * or the system store) and the same explicit proxy decision: CURLOPT_PROXY
 * is always set, so curl never reads the *_proxy variables on its own.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

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

struct tn_probe {
	struct tn_probe_req q;	/* url, proxy, ca_file, timeout_ms: for the facts of a failure */
	CURLM *multi;
	CURL *easy;
	struct curl_slist *hdrs, *proxy_hdrs;	/* credentials: wiped before freeing */
	struct tn_buf body;
	char ebuf[CURL_ERROR_SIZE];
	CURLcode rc;
	int added, done;
};

/* The URL's host and port, for the facts of a failure. */
static void tn_probe_where(const char *url, char *host, size_t cap, int *port)
{
	const char *h = strstr(url, "://"), *end;
	size_t n;

	h = h ? h + 3 : url;
	if (*h == '[') {	/* [v6]:port */
		h++;
		end = strchr(h, ']');
		n = end ? (size_t)(end - h) : strlen(h);
		end = end ? end + 1 : h + n;
	} else {
		n = strcspn(h, "/:?#");
		end = h + n;
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = *end == ':' ? atoi(end + 1) : 443;
}

/* OpenSSL's reason text at the end of curl's "...: error:0A00010B:SSL routines::wrong version number". */
static const char *tn_probe_tls_why(const char *ebuf, CURLcode rc)
{
	const char *colon = strrchr(ebuf, ':');

	if (colon && colon[1])
		return colon[1] == ' ' ? colon + 2 : colon + 1;
	return ebuf[0] ? ebuf : curl_easy_strerror(rc);
}

static int tn_probe_error(struct tn_probe *p, struct tn_err *err)
{
	const struct tn_probe_req *q = &p->q;
	long connect_code = 0, os_errno = 0, verify = 0;
	char host[256];
	struct tn_facts f = { .host = host, .phase = TN_P_PROBE };

	tn_probe_where(q->url, host, sizeof(host), &f.port);
	curl_easy_getinfo(p->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
	curl_easy_getinfo(p->easy, CURLINFO_OS_ERRNO, &os_errno);
	if (q->proxy && connect_code && connect_code != 200) {
		f.proxy = q->proxy;
		f.status = (int)connect_code;
		return tn_err_set(err, connect_code == 407 ? TN_R_PROXY_AUTH_REQUIRED : TN_R_PROXY_REFUSED, &f);
	}
	switch (p->rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		return tn_err_set(err, TN_R_DNS_UNKNOWN_HOST, &f);
	case CURLE_COULDNT_RESOLVE_PROXY:
		f.proxy = q->proxy;
		return tn_err_set(err, TN_R_PROXY_UNKNOWN_HOST, &f);
	case CURLE_COULDNT_CONNECT:
		f.errnum = (int)os_errno;
		if (q->proxy) {
			f.proxy = q->proxy;
			return tn_err_set(err, TN_R_PROXY_UNREACHABLE, &f);
		}
		return tn_err_set(err, os_errno == ECONNREFUSED ? TN_R_CONNECT_REFUSED :
				  TN_R_CONNECT_UNREACHABLE, &f);
	case CURLE_OPERATION_TIMEDOUT:
		f.timeout_ms = (int)q->timeout_ms;
		return tn_err_set(err, TN_R_TIMEOUT_PROBE, &f);
	case CURLE_SSL_CACERT_BADFILE:
		return TN_FAIL(err, TN_R_TLS_CA_FILE, .ca_file = q->ca_file);
	case CURLE_PEER_FAILED_VERIFICATION:
		/* curl checks the name itself, after the chain verified, and
		 * says so only in its text (the verify result is then its own) */
		curl_easy_getinfo(p->easy, CURLINFO_SSL_VERIFYRESULT, &verify);
		if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH ||
		    strstr(p->ebuf, "subject name") || strstr(p->ebuf, "alternative"))
			return tn_err_set(err, TN_R_TLS_WRONG_HOST, &f);
		f.verify_code = (int)verify;
		f.verify_text = X509_verify_cert_error_string(verify);
		f.ca_bundle = q->ca_file != NULL;
		return tn_err_set(err, TN_R_TLS_UNTRUSTED, &f);
	case CURLE_SSL_CONNECT_ERROR:
		f.detail = tn_probe_tls_why(p->ebuf, p->rc);
		return tn_err_set(err, TN_R_TLS_HANDSHAKE, &f);
	case CURLE_WRITE_ERROR:	/* only tn_probe_write fails a write */
		if (!p->body.overflow)
			return tn_err_resource(err, ENOMEM, &f);
		f.limit = TN_PROBE_BODY_MAX;
		return tn_err_set(err, TN_R_HTTP_TOO_LARGE, &f);
	case CURLE_WEIRD_SERVER_REPLY:
		return tn_err_set(err, TN_R_HTTP_MALFORMED, &f);
	case CURLE_GOT_NOTHING:
		return tn_err_set(err, TN_R_CONNECT_CLOSED, &f);
	default:
		break;
	}
	f.detail = p->ebuf[0] ? p->ebuf : curl_easy_strerror(p->rc);
	return tn_err_set(err, TN_R_CONNECT_FAILED, &f);
}


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
		return tn_err_resource(err, ENOMEM, &(const struct tn_facts){ .phase = TN_P_PROBE });
	p->q = *q;
	p->easy = c = curl_easy_init();
	p->multi = curl_multi_init();
	if (!c || !p->multi || tn_probe_header(&p->hdrs, "Authorization: ", q->authorization) ||
	    (q->instance && tn_probe_header(&p->hdrs, "Cookie: ARRAffinity=", q->instance)) ||
	    (q->proxy && q->proxy_auth &&
	     tn_probe_header(&p->proxy_hdrs, "Proxy-Authorization: ", q->proxy_auth))) {
		tn_probe_free(p);
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "setting up the HTTP request");
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
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "curl_multi_add_handle");
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
		return TN_FAIL(err, TN_R_INTERNAL, .detail = "the HTTP request is still running");
	if (p->rc != CURLE_OK)
		return tn_probe_error(p, err);
	curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &out->status);
	out->body = p->body.p ? p->body.p : calloc(1, 1);
	if (!out->body)
		return tn_err_resource(err, ENOMEM, &(const struct tn_facts){ .phase = TN_P_PROBE });
	out->body_len = p->body.len;
	p->body.p = NULL;	/* the caller's now */
	p->body.len = 0;
	return 0;
}
