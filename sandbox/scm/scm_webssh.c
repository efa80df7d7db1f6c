/*
 * scm_webssh.c - /webssh/ on every site: Kudu's browser SSH, proxied to the
 * local web SSH service (sandbox/webssh/) by scm_proxy.c.
 *
 * The service trusts whatever arrives with its token, so the checks happen
 * here: the site's own credentials (Basic/Bearer, as for the tunnel), or the
 * session cookie this module issues when they were given.  A browser resends
 * cached Basic credentials with page loads but not reliably with the
 * terminal's WebSocket, so the cookie is what carries the sign-in to it.
 * Secrets (Authorization, cookies) stay here; the service learns the site,
 * the instance and the loopback port of its container port 2222 from
 * X-Webssh-* headers that a client cannot supply.
 */
#include "scm.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define WEBSSH_PREFIX "/webssh"
#define WEBSSH_COOKIE "WebsshSession"
#define WEBSSH_CONTAINER_PORT 2222	/* Kudu's web SSH always uses it */
#define WEBSSH_MAC_HEX 64

static unsigned char webssh_key[32];

int
webssh_init(void)
{
	/* per process: a restart signs everyone out, as a new key should */
	if (RAND_bytes(webssh_key, sizeof(webssh_key)) == 1)
		return 0;
	fprintf(stderr, "scm-server: no random bytes for the web SSH session "
		"key\n");
	return -1;
}

/* 1 for a decoded path that is the proxy's: /webssh or /webssh/... */
int
webssh_path(const char *path)
{
	return proxy_path(path, WEBSSH_PREFIX);
}

/* ------------------------------------------------------------------ cookies */

/* The hex HMAC-SHA256 of site "\n" expiry; -1 if it cannot be made. */
static int
webssh_mac(const char *site, const char *expiry, char out[WEBSSH_MAC_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	char msg[PROXY_NAME_MAX + 32];
	unsigned mdlen = 0, i;
	int n;

	n = snprintf(msg, sizeof(msg), "%s\n%s", site, expiry);
	if (n < 0 || (size_t)n >= sizeof(msg) ||
	    !HMAC(EVP_sha256(), webssh_key, sizeof(webssh_key),
		  (const unsigned char *)msg, (size_t)n, md, &mdlen) ||
	    mdlen * 2 != WEBSSH_MAC_HEX)
		return -1;
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[WEBSSH_MAC_HEX] = '\0';
	return 0;
}

/* 1 when v is "<expiry>.<mac>" made by this process for site, unexpired. */
static int
webssh_session_valid(const char *site, const char *v, size_t len)
{
	char digits[19], mac[WEBSSH_MAC_HEX + 1];
	const char *dot = memchr(v, '.', len);
	size_t elen;

	if (!dot)
		return 0;
	elen = (size_t)(dot - v);
	/* 18 digits cannot overflow a long long */
	if (!elen || elen >= sizeof(digits) ||
	    len - elen - 1 != WEBSSH_MAC_HEX)
		return 0;
	memcpy(digits, v, elen);
	digits[elen] = '\0';
	if (strspn(digits, "0123456789") != elen ||
	    strtoll(digits, NULL, 10) <= (long long)time(NULL) ||
	    webssh_mac(site, digits, mac))
		return 0;
	return !CRYPTO_memcmp(mac, dot + 1, WEBSSH_MAC_HEX);
}

static int
webssh_session_ok(const char *site, const char *cookies)
{
	const char *p = cookies, *v;
	size_t len;

	/* several may come (paths, an old one): any valid one will do */
	while (proxy_cookie_next(&p, WEBSSH_COOKIE, &v, &len))
		if (webssh_session_valid(site, v, len))
			return 1;
	return 0;
}

static void
webssh_issue(char *out, size_t outlen, const char *site, int lifetime)
{
	char digits[24], mac[WEBSSH_MAC_HEX + 1];

	snprintf(digits, sizeof(digits), "%lld",
		 (long long)time(NULL) + lifetime);
	if (webssh_mac(site, digits, mac)) {
		/* the request is authorized all the same; no session, though */
		scm_log(SCM_LOG_WARN, "webssh: cannot sign a session for %s\n",
			site);
		return;
	}
	snprintf(out, outlen,
		 "Set-Cookie: " WEBSSH_COOKIE "=%s.%s; Path=" WEBSSH_PREFIX
		 "; Max-Age=%ld; Secure; HttpOnly; SameSite=Strict\r\n",
		 digits, mac, (long)lifetime);
}

/* ------------------------------------------------------------------ routing */

static int
webssh_hex(int ch)
{
	return isdigit(ch) ? ch - '0' : tolower(ch) - 'a' + 10;
}

/* The decoded query parameter "instance" of the raw request line, or "". */
static void
webssh_query_instance(const char *raw, char *out, size_t outlen)
{
	const char *t = strchr(raw, ' '), *q, *end, *amp, *eq;
	size_t o = 0;

	out[0] = '\0';
	if (!t)
		return;
	t++;
	end = t + strcspn(t, " \r\n");
	q = memchr(t, '?', (size_t)(end - t));
	for (q = q ? q + 1 : end; q < end; q = amp + 1) {
		amp = memchr(q, '&', (size_t)(end - q));
		if (!amp)
			amp = end;
		eq = memchr(q, '=', (size_t)(amp - q));
		if (!eq || eq - q != 8 || strncasecmp(q, "instance", 8))
			continue;
		for (q = eq + 1; q < amp && o + 1 < outlen; q++) {
			char ch = *q;

			if (ch == '+') {
				ch = ' ';
			} else if (ch == '%' && amp - q > 2 &&
				   isxdigit((unsigned char)q[1]) &&
				   isxdigit((unsigned char)q[2])) {
				ch = (char)(webssh_hex((unsigned char)q[1]) *
					    16 +
					    webssh_hex((unsigned char)q[2]));
				q += 2;
			}
			/* a NUL would cut the name short into another one */
			out[o++] = ch ? ch : '?';
		}
		out[o] = '\0';
		return;
	}
}

/* Appends to a NUL-terminated buffer, silently truncating. */
static void
webssh_append(char *buf, size_t len, const char *s)
{
	size_t used = strlen(buf);

	snprintf(buf + used, len - used, "%s", s);
}

/*
 * The instance: ?instance= (case-insensitive name), else ARRAffinity, else
 * the site's default, as the tunnel routes.  0: name and loopback port of
 * container port 2222 (0: none) set; -1: no such instance, body says so.
 */
static int
webssh_pick(const struct scm_site *site, const struct proxy_request *rq,
	    char *name, size_t namelen, int *port, char *body, size_t bodylen)
{
	char want[PROXY_NAME_MAX], affinity[PROXY_NAME_MAX];
	const struct scm_instance *inst = NULL;
	size_t i;

	webssh_query_instance(rq->raw, want, sizeof(want));
	proxy_affinity(rq->cookie, affinity, sizeof(affinity));
	config_read_begin();
	if (want[0]) {
		for (i = 0; i < site->ninstances && !inst; i++)
			if (!strcasecmp(site->instances[i].name, want))
				inst = &site->instances[i];
	} else {
		inst = config_route(site, affinity[0] ? affinity : NULL);
	}
	if (inst) {
		snprintf(name, namelen, "%s", inst->name);
		*port = config_loopback_port(inst, WEBSSH_CONTAINER_PORT);
		if (*port < 0)
			*port = 0;
	} else {
		snprintf(body, bodylen, "No instance named %s; this app's "
			 "instances: ", want);
		for (i = 0; i < site->ninstances; i++) {
			if (i)
				webssh_append(body, bodylen, ", ");
			webssh_append(body, bodylen, site->instances[i].name);
		}
	}
	config_read_end();
	return inst ? 0 : -1;
}

/* ------------------------------------------------------------------ entry */

/*
 * Proxies one /webssh request (rq->raw: the head as received) to its end;
 * the connection is over afterwards.  0 when the proxy is not configured:
 * the caller answers as for any other path.
 */
int
webssh_proxy(struct scm_conn *c, const struct proxy_request *rq)
{
	char token[SCM_SERVICE_TOKEN_MAX + 1], instance[PROXY_NAME_MAX];
	char body[PROXY_MESSAGE_MAX], cookie[PROXY_NAME_MAX] = "";
	struct proxy *p;
	int service_port, lifetime = 0, authorized = 0, port = 0;

	config_read_begin();
	service_port = c->cfg->webssh.port;
	if (service_port) {
		snprintf(token, sizeof(token), "%s", c->cfg->webssh.token);
		lifetime = c->cfg->webssh_session_seconds;
		authorized = auth_check(c->site, rq->authorization);
	}
	config_read_end();
	if (!service_port)
		return 0;

	p = proxy_open(c, rq, PROXY_TEXT, "web SSH");
	if (!p)
		return 1;
	if (!proxy_undecided(p))
		;	/* a malformed head: answered */
	else if (!authorized && !webssh_session_ok(c->site->name, rq->cookie))
		proxy_answer(p, 401, "Sign in with the app's deployment "
			     "credentials or a token");
	else if (walls_ssh_off(c->site, SCM_SSH_PORT))
		proxy_answer(p, 403, SCM_SSH_DISABLED);
	else if (webssh_pick(c->site, rq, instance, sizeof(instance), &port,
			     body, sizeof(body)))
		proxy_answer(p, 404, body);
	else {
		if (authorized)
			webssh_issue(cookie, sizeof(cookie), c->site->name,
				     lifetime);
		proxy_forward(p, service_port, cookie, "X-Webssh-Token: %s\r\n"
			      "X-Webssh-Site: %s\r\nX-Webssh-Instance: %s\r\n"
			      "X-Webssh-Port: %d\r\n", token, c->site->name,
			      instance, port);
	}
	proxy_finish(p);
	return 1;
}
