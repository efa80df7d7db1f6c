/*
 * scm_exec.c - /exec/ on every site: the exec channel of Azure's
 * `az webapp exec` (GET /exec/shell, a WebSocket; POST /exec/execute),
 * proxied to the local exec service (sandbox/exec_service/) by scm_proxy.c.
 *
 * What the front end and Kudu decide happens here, answered in their JSON
 * shape {"Message": "..."} (docs/PROTOCOL.md, "Exec channel"): the site's
 * own credentials (Basic/Bearer, as for the tunnel; 401), the site's
 * standing refusal or a fault's (the config's exec_refusal: noexec-app's
 * 403, windows-app's 404), a stopped app (503), and the instance, by
 * ARRAffinity as the tunnel routes.  The service learns the site and the
 * instance from X-Exec-* headers that a client cannot supply.
 */
#include "scm.h"

#include <string.h>

#define EXEC_PREFIX "/exec"
/* ASP.NET Web API's words for a request its authorization refused */
#define EXEC_DENIED "Authorization has been denied for this request."
#define EXEC_STOPPED "The app is stopped: there is no container to run in. " \
	"Start the app and try again."

/* 1 for a decoded path that is the proxy's: /exec or /exec/... */
int
exec_path(const char *path)
{
	return proxy_path(path, EXEC_PREFIX);
}

/*
 * Proxies one /exec request (rq->raw: the head as received) to its end;
 * the connection is over afterwards.  0 when the proxy is not configured:
 * the caller answers as for any other path.
 */
int
exec_proxy(struct scm_conn *c, const struct proxy_request *rq)
{
	char token[SCM_SERVICE_TOKEN_MAX + 1], instance[PROXY_NAME_MAX];
	char affinity[PROXY_NAME_MAX];
	char refusal[SCM_EXEC_REFUSAL_MAX + 1];
	unsigned refusal_status = 0;
	struct proxy *p;
	int service_port, authorized = 0, stopped = 0;

	proxy_affinity(rq->cookie, affinity, sizeof(affinity));
	config_read_begin();
	service_port = c->cfg->exec.port;
	if (service_port) {
		snprintf(token, sizeof(token), "%s", c->cfg->exec.token);
		authorized = auth_check(c->site, rq->authorization);
		refusal_status = c->site->exec_refusal_status;
		if (refusal_status)
			snprintf(refusal, sizeof(refusal), "%s",
				 c->site->exec_refusal_body);
		stopped = !strcmp(config_state(c->site), "STOPPED");
		snprintf(instance, sizeof(instance), "%s",
			 config_route(c->site, affinity[0] ? affinity
						: NULL)->name);
	}
	config_read_end();
	if (!service_port)
		return 0;

	p = proxy_open(c, rq, PROXY_JSON, "exec");
	if (!p)
		return 1;
	if (!proxy_undecided(p))
		;	/* a malformed head: answered */
	else if (!authorized)
		proxy_answer(p, 401, EXEC_DENIED);
	else if (refusal_status)
		proxy_answer_body(p, refusal_status,
				  "application/json; charset=utf-8", refusal);
	else if (stopped)
		proxy_answer(p, 503, EXEC_STOPPED);
	else {
		proxy_forward(p, service_port, "", "X-Exec-Token: %s\r\n"
			      "X-Exec-Site: %s\r\nX-Exec-Instance: %s\r\n",
			      token, c->site->name, instance);
	}
	proxy_finish(p);
	return 1;
}
