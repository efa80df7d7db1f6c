/*
 * scm_walls.c - what real Azure puts in front of an SCM site before any of
 * its endpoints (docs/PROTOCOL.md section 9), per site and reloadable:
 *
 *   ip_forbidden      access restrictions this machine is not in, or public
 *                     network access disabled (a private endpoint): every
 *                     request gets 403 "Ip Forbidden" and the front end's
 *                     HTML page, credentials or not;
 *   bearer_forbidden  a Bearer token the site accepts, of a caller whose
 *                     roles lack Microsoft.Web/sites/publish/Action: 403;
 *   ssh_disabled      the site's sshEnabled is false: the SSH port is never
 *                     reachable (GetStatus), the tunnel to it and browser
 *                     SSH are refused with 403 (scm_http.c, scm_webssh.c).
 *
 * The bodies are inferred (Azure does not publish them); their status codes
 * and shapes are what the extension relies on.
 */
#include "scm.h"

#include <string.h>
#include <strings.h>

#define WALLS_IO_MS 10000

static const char walls_ip_page[] =
	"<!DOCTYPE html>\n<html>\n<head>\n"
	"<title>Web App - Unavailable</title>\n"
	"<meta name=\"viewport\" content=\"width=device-width, "
	"initial-scale=1\">\n</head>\n<body>\n"
	"<h1>Error 403 - Forbidden</h1>\n"
	"<p>The web app you have attempted to reach has blocked your "
	"access.</p>\n</body>\n</html>\n";

static const char walls_rights_body[] =
	"{\"Message\":\"The caller does not have permission to perform "
	"action 'Microsoft.Web/sites/publish/Action' on this site.\"}";

/* One whole answer in one write; the connection closes after it. */
static void
walls_answer(struct scm_conn *c, const char *status_line, const char *ctype,
	     const char *body)
{
	char buf[2048];
	int n;

	n = snprintf(buf, sizeof(buf),
		     "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     status_line, ctype, strlen(body), body);
	if (n > 0 && (size_t)n < sizeof(buf))
		tls_write_all(c->ssl, c->fd, buf, (size_t)n, WALLS_IO_MS);
}

/*
 * The front end's decision on a request, before any endpoint sees it: 1
 * when it answered (403), 0 to go on.
 */
int
walls_front(struct scm_conn *c, const char *authorization)
{
	int ip, rights = 0;

	config_read_begin();
	ip = c->site->ip_forbidden;
	if (!ip && c->site->bearer_forbidden && authorization &&
	    !strncasecmp(authorization, "Bearer ", 7))
		rights = auth_check(c->site, authorization);
	config_read_end();
	if (ip) {
		walls_answer(c, "403 Ip Forbidden", "text/html", walls_ip_page);
		return 1;
	}
	if (rights) {
		walls_answer(c, "403 Forbidden",
			     "application/json; charset=utf-8",
			     walls_rights_body);
		return 1;
	}
	return 0;
}

/* 1 when SSH (container port 2222) is turned off for the site. */
int
walls_ssh_off(const struct scm_site *site, int container_port)
{
	int off;

	config_read_begin();
	off = site->ssh_disabled && container_port == SCM_SSH_PORT;
	config_read_end();
	return off;
}
