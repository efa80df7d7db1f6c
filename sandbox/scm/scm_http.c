/*
 * scm_http.c - the request side of a site's listener: auth, the plain
 * requests of PROTOCOL.md section 2 (GetStatus v1/v2, 400 for anything else
 * on the tunnel path, /api/settings), refusals of the WebSocket upgrade, and
 * routing (ARRAffinity, AppsvcTunnelPort, AppsvcTunnelBuffer).  Established
 * WebSockets are handed to scm_relay.c.
 *
 * Bodies are small; headers go out from the request callback and the body
 * from HTTP_WRITEABLE, as lws requires.
 */
#include "scm.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_BODY_MAX SCM_HTTP_BODY_MAX
#define HTTP_PROBE_TIMEOUT_MS 2000
#define HTTP_UNREACHABLE "Unable to connect to WebApp"

/*
 * Status line + headers; with a body, the body waits for WRITEABLE.
 * in_upgrade: lws completes the transaction itself after CONFIRM_UPGRADE.
 */
static int
http_respond(struct lws *wsi, struct scm_pss *pss, unsigned int status,
	     const char *ctype, const char *body, int challenge, int in_upgrade)
{
	static const char realm[] = "Basic realm=\"site\"";
	unsigned char buf[LWS_PRE + 1024];
	unsigned char *start = buf + LWS_PRE, *p = start;
	unsigned char *end = buf + sizeof(buf) - 1;
	size_t blen = body ? strlen(body) : 0;

	if (blen >= HTTP_BODY_MAX || (blen && in_upgrade))
		return -1;
	if (lws_add_http_common_headers(wsi, status, ctype, blen, &p, end))
		return -1;
	if (challenge &&
	    lws_add_http_header_by_name(wsi,
					(const unsigned char *)"www-authenticate:",
					(const unsigned char *)realm,
					(int)sizeof(realm) - 1, &p, end))
		return -1;
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	if (in_upgrade)
		return 1;	/* "headers sent": lws does the rest */
	if (!blen)
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	memcpy(pss->body, body, blen);
	pss->body_len = blen;
	lws_callback_on_writable(wsi);
	return 0;
}

static int
http_write_body(struct lws *wsi, struct scm_pss *pss)
{
	unsigned char buf[LWS_PRE + HTTP_BODY_MAX];
	size_t n = pss->body_len;

	if (!n)
		return 0;
	memcpy(buf + LWS_PRE, pss->body, n);
	pss->body_len = 0;
	if (lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) < (int)n)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int
http_authorized(struct lws *wsi, const struct scm_site *site)
{
	int len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	char *v;
	int ok;

	if (len <= 0)
		return 0;
	v = malloc((size_t)len + 1);
	if (!v)
		return 0;
	ok = lws_hdr_copy(wsi, v, len + 1, WSI_TOKEN_HTTP_AUTHORIZATION) >= 0 &&
	     auth_check(site, v);
	free(v);
	return ok;
}

static int
http_is_tunnel_path(const char *path)
{
	return !strncasecmp(path, SCM_TUNNEL_PATH, strlen(SCM_TUNNEL_PATH));
}

/* The query string as "a&b=c" (lws keeps each argument as a fragment). */
static void
http_query(struct lws *wsi, char *q, size_t qlen)
{
	char frag[512];
	size_t used = 0;
	int i, n;

	q[0] = '\0';
	for (i = 0; ; i++) {
		n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag),
					  WSI_TOKEN_HTTP_URI_ARGS, i);
		if (n < 0)
			break;
		if (used + (size_t)n + 2 > qlen)
			break;	/* longer than any query we care about */
		if (used)
			q[used++] = '&';
		memcpy(q + used, frag, (size_t)n);
		used += (size_t)n;
		q[used] = '\0';
	}
}

/* Integer value of a custom header, or dflt when absent or malformed. */
static long
http_custom_int(struct lws *wsi, const char *lname, long lo, long hi,
		long dflt)
{
	char v[32], *p, *endp;
	long n;

	if (lws_hdr_custom_copy(wsi, v, sizeof(v), lname,
				(int)strlen(lname)) <= 0)
		return dflt;
	for (p = v; *p == ' ' || *p == '\t'; p++)
		;
	n = strtol(p, &endp, 10);
	while (*endp == ' ' || *endp == '\t')
		endp++;
	if (endp == p || *endp || n < lo || n > hi)
		return dflt;
	return n;
}

/* ARRAffinity value from the Cookie header(s) into out, or "" */
static void
http_affinity(struct lws *wsi, char *out, size_t outlen)
{
	static const char name[] = "ARRAffinity=";
	char cookie[4096], *p;
	size_t n;

	out[0] = '\0';
	if (lws_hdr_copy(wsi, cookie, sizeof(cookie),
			 WSI_TOKEN_HTTP_COOKIE) <= 0)
		return;
	for (p = cookie; *p; ) {
		while (*p == ' ' || *p == ';' || *p == ',')
			p++;
		if (!strncmp(p, name, sizeof(name) - 1)) {
			p += sizeof(name) - 1;
			n = strcspn(p, ";, ");
			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, p, n);
			out[n] = '\0';
			return;
		}
		p += strcspn(p, ";,");
	}
}

int
http_route(struct lws *wsi, const struct scm_site *site,
	   struct scm_route *route)
{
	const struct scm_instance *inst;
	char affinity[256];

	http_affinity(wsi, affinity, sizeof(affinity));
	inst = config_route(site, affinity[0] ? affinity : NULL);
	route->container_port = (int)http_custom_int(wsi, "appsvctunnelport:",
						     1, 65535,
						     site->default_port);
	route->loopback_port = config_loopback_port(inst,
						    route->container_port);
	route->read_size = (size_t)http_custom_int(wsi, "appsvctunnelbuffer:",
						   1, SCM_MAX_READ,
						   SCM_DEFAULT_READ);
	return 0;
}

static int
http_get_status(struct lws *wsi, struct scm_pss *pss,
		const struct scm_site *site, int v2)
{
	struct scm_route route;
	char body[HTTP_BODY_MAX];
	int ok;

	http_route(wsi, site, &route);
	ok = route.loopback_port > 0 &&
	     probe_tcp(route.loopback_port, HTTP_PROBE_TIMEOUT_MS);
	if (v2)
		snprintf(body, sizeof(body), "{\"port\":%d,\"state\":\"%s\","
			 "\"canReachPort\":%s,\"msg\":\"%s\"}",
			 route.container_port, config_state(site),
			 ok ? "true" : "false", ok ? "" : HTTP_UNREACHABLE);
	else if (ok)
		snprintf(body, sizeof(body), "SUCCESS:%d",
			 route.container_port);
	else
		snprintf(body, sizeof(body), "FAILURE:%d:" HTTP_UNREACHABLE,
			 route.container_port);
	return http_respond(wsi, pss, 200,
			    v2 ? "application/json; charset=utf-8"
			       : "text/plain; charset=utf-8",
			    body, 0, 0);
}

static int
http_request(struct lws *wsi, struct scm_pss *pss,
	     const struct scm_site *site, const char *path)
{
	char q[2048];

	if (!http_authorized(wsi, site))
		return http_respond(wsi, pss, 401, NULL, NULL, 1, 0);
	if (http_is_tunnel_path(path)) {
		http_query(wsi, q, sizeof(q));
		if (strcasestr(q, "getstatus"))
			return http_get_status(wsi, pss, site,
					       strcasestr(q, "getstatusapiver=2")
					       != NULL);
		return http_respond(wsi, pss, 400, NULL, NULL, 0, 0);
	}
	if (!strcasecmp(path, "/api/settings"))
		return http_respond(wsi, pss, 200,
				    "application/json; charset=utf-8", "{}", 0,
				    0);
	return http_respond(wsi, pss, 404, NULL, NULL, 0, 0);
}

/* 0: let the upgrade proceed; 1: refused (response sent); -1: hang up. */
static int
http_confirm_upgrade(struct lws *wsi, struct scm_pss *pss,
		     const struct scm_site *site, const char *upgrade)
{
	char uri[1024];
	unsigned int status;

	if (!upgrade || strcasecmp(upgrade, "websocket"))
		return 0;
	if (!http_authorized(wsi, site))
		return http_respond(wsi, pss, 401, NULL, NULL, 1, 1);
	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
	    !http_is_tunnel_path(uri))
		return http_respond(wsi, pss, 404, NULL, NULL, 0, 1);
	if (site->fault.kind == SCM_FAULT_REFUSE) {
		status = (unsigned int)site->fault.value;
		return http_respond(wsi, pss, status, NULL, NULL, status == 401,
				    1);
	}
	return 0;
}

int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	      void *in, size_t len)
{
	struct scm_pss *pss = user;
	struct lws_vhost *vh = lws_get_vhost(wsi);
	struct scm_site *site = vh ? lws_get_vhost_user(vh) : NULL;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (!site || !pss)
			return -1;
		return http_request(wsi, pss, site, in ? in : "/");
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return pss ? http_write_body(wsi, pss) : -1;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		if (!site)
			return -1;
		return http_confirm_upgrade(wsi, pss, site, in);
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* ws user space is fresh here; headers are still attached */
		if (!site || !pss)
			return -1;
		memset(pss, 0, sizeof(*pss));
		return http_route(wsi, site, &pss->route);
	case LWS_CALLBACK_ESTABLISHED:
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_TIMER:
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
	case LWS_CALLBACK_CLOSED:
		if (!pss)
			return reason == LWS_CALLBACK_CLOSED ? 0 : -1;
		return relay_ws_callback(wsi, reason, site, &pss->route,
					 &pss->relay, in, len);
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}
