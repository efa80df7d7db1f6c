/*
 * scm_config.c - the config file of Contract 2: load, reload (SIGHUP), and
 * the look-ups requests need (route by ARRAffinity, container port mapping,
 * effective state).  Also the optional local services that /webssh/ and
 * /exec/ are proxied to ("webssh", "exec").
 *
 * Sites live in one array for the process lifetime: listeners and open
 * relays point at them, so a reload swaps field values in place instead of
 * replacing the array.  Connection threads read those fields under the read
 * side of config_lock; the reload holds the write side.
 */
#include "scm.h"
#include "scm_json.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define CONFIG_MAX_BYTES (4 * 1024 * 1024)

static pthread_rwlock_t config_lock = PTHREAD_RWLOCK_INITIALIZER;

void
config_read_begin(void)
{
	pthread_rwlock_rdlock(&config_lock);
}

void
config_read_end(void)
{
	pthread_rwlock_unlock(&config_lock);
}

static char *
config_strdup(const struct json *j, const char *what, char *err, size_t errlen)
{
	char *s;

	if (!j || j->type != JSON_STRING) {
		snprintf(err, errlen, "%s: expected a string", what);
		return NULL;
	}
	s = strdup(j->string);
	if (!s)
		snprintf(err, errlen, "%s: out of memory", what);
	return s;
}

static int
config_int(const struct json *j, const char *what, long long lo, long long hi,
	   long long *out, char *err, size_t errlen)
{
	if (!j || j->type != JSON_NUMBER || j->number != floor(j->number) ||
	    j->number < (double)lo || j->number > (double)hi) {
		snprintf(err, errlen, "%s: expected an integer in [%lld, %lld]",
			 what, lo, hi);
		return -1;
	}
	*out = (long long)j->number;
	return 0;
}

/* A Unix time, or null/absent for none (0). */
static int
config_time(const struct json *j, const char *site, const char *what,
	    double *out, char *err, size_t errlen)
{
	*out = 0;
	if (!j || j->type == JSON_NULL)
		return 0;
	if (j->type != JSON_NUMBER) {
		snprintf(err, errlen, "site %s: %s: expected a number", site,
			 what);
		return -1;
	}
	*out = j->number;
	return 0;
}

static void
config_free_instances(struct scm_instance *in, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(in[i].name);
		free(in[i].container_ports);
		free(in[i].loopback_ports);
	}
	free(in);
}

static void
config_free_site(struct scm_site *s)
{
	size_t i;

	free(s->name);
	free(s->cert);
	free(s->key);
	free(s->basic_user);
	free(s->basic_password);
	for (i = 0; i < s->nbearer; i++)
		free(s->bearer[i]);
	free(s->bearer);
	free(s->state);
	free(s->exec_refusal_body);
	config_free_instances(s->instances, s->ninstances);
	for (i = 0; i < s->ncontainers; i++) {
		free(s->containers[i]);
		free(s->container_bodies[i]);
	}
	free(s->containers);
	free(s->container_bodies);
	memset(s, 0, sizeof(*s));
}

static int
config_fault(const struct json *j, struct scm_fault *f, char *err,
	     size_t errlen)
{
	const struct json *v;
	long long n;

	memset(f, 0, sizeof(*f));
	if (!j || j->type == JSON_NULL)
		return 0;
	if (j->type != JSON_OBJECT || j->count != 1) {
		snprintf(err, errlen, "fault: expected null or an object with "
			 "one of refuse, drop_after_bytes, stall_after_bytes");
		return -1;
	}
	if ((v = json_get(j, "refuse"))) {
		if (config_int(v, "fault.refuse", 100, 599, &n, err, errlen))
			return -1;
		f->kind = SCM_FAULT_REFUSE;
	} else if ((v = json_get(j, "drop_after_bytes"))) {
		if (config_int(v, "fault.drop_after_bytes", 0, 1LL << 52, &n,
			       err, errlen))
			return -1;
		f->kind = SCM_FAULT_DROP;
	} else if ((v = json_get(j, "stall_after_bytes"))) {
		if (config_int(v, "fault.stall_after_bytes", 0, 1LL << 52, &n,
			       err, errlen))
			return -1;
		f->kind = SCM_FAULT_STALL;
	} else {
		snprintf(err, errlen, "fault: unknown kind '%s'", j->keys[0]);
		return -1;
	}
	f->value = n;
	return 0;
}

/* "exec_refusal": null, or {"status": N, "body": "<the answer's body>"}. */
static int
config_exec_refusal(const struct json *j, struct scm_site *s, char *err,
		    size_t errlen)
{
	long long n;

	if (!j || j->type == JSON_NULL)
		return 0;
	if (j->type != JSON_OBJECT || j->count != 2) {
		snprintf(err, errlen, "site %s: exec_refusal: expected null or "
			 "{status, body}", s->name);
		return -1;
	}
	if (config_int(json_get(j, "status"), "exec_refusal.status", 400, 599,
		       &n, err, errlen))
		return -1;
	s->exec_refusal_body = config_strdup(json_get(j, "body"),
					     "exec_refusal.body", err, errlen);
	if (!s->exec_refusal_body)
		return -1;
	if (strlen(s->exec_refusal_body) > SCM_EXEC_REFUSAL_MAX) {
		snprintf(err, errlen, "site %s: exec_refusal.body: at most %d "
			 "bytes", s->name, SCM_EXEC_REFUSAL_MAX);
		return -1;
	}
	s->exec_refusal_status = (unsigned)n;
	return 0;
}

/* An optional boolean (absent: false). */
static int
config_bool(const struct json *j, const char *what, const struct scm_site *s,
	    int *out, char *err, size_t errlen)
{
	*out = 0;
	if (!j || j->type == JSON_NULL)
		return 0;
	if (j->type != JSON_BOOL) {
		snprintf(err, errlen, "site %s: %s: expected true or false",
			 s->name, what);
		return -1;
	}
	*out = j->boolean;
	return 0;
}

/* "sitecontainers": null, or {"": "<the list's JSON>", "<name>": "<its>"}. */
static int
config_containers(const struct json *j, struct scm_site *s, char *err,
		  size_t errlen)
{
	size_t i;

	if (!j || j->type == JSON_NULL)
		return 0;
	if (j->type != JSON_OBJECT) {
		snprintf(err, errlen, "site %s: sitecontainers: expected null "
			 "or an object of JSON texts", s->name);
		return -1;
	}
	s->containers = calloc(j->count + 1, sizeof(char *));
	s->container_bodies = calloc(j->count + 1, sizeof(char *));
	if (!s->containers || !s->container_bodies) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < j->count; i++) {
		s->containers[i] = strdup(j->keys[i]);
		if (!s->containers[i]) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		s->ncontainers++;
		s->container_bodies[i] = config_strdup(j->items[i],
						       "sitecontainers[]",
						       err, errlen);
		if (!s->container_bodies[i])
			return -1;
	}
	return 0;
}

static int
config_instances(const struct json *j, struct scm_site *s, char *err,
		 size_t errlen)
{
	size_t i, k;
	long long n;

	if (!j || j->type != JSON_ARRAY || !j->count) {
		snprintf(err, errlen, "site %s: instances: expected a "
			 "non-empty array", s->name);
		return -1;
	}
	s->instances = calloc(j->count, sizeof(*s->instances));
	if (!s->instances)
		goto oom;
	s->ninstances = j->count;
	for (i = 0; i < j->count; i++) {
		const struct json *inst = j->items[i];
		const struct json *ports = json_get(inst, "ports");
		struct scm_instance *d = &s->instances[i];

		d->name = config_strdup(json_get(inst, "name"),
					"instances[].name", err, errlen);
		if (!d->name)
			return -1;
		if (!ports || ports->type != JSON_OBJECT) {
			snprintf(err, errlen, "instance %s: ports: expected "
				 "an object", d->name);
			return -1;
		}
		d->nports = ports->count;
		d->container_ports = calloc(ports->count + 1, sizeof(int));
		d->loopback_ports = calloc(ports->count + 1, sizeof(int));
		if (!d->container_ports || !d->loopback_ports)
			goto oom;
		for (k = 0; k < ports->count; k++) {
			char *endp;
			long cp = strtol(ports->keys[k], &endp, 10);

			if (*endp || cp < 1 || cp > 65535) {
				snprintf(err, errlen, "instance %s: bad "
					 "container port '%s'", d->name,
					 ports->keys[k]);
				return -1;
			}
			if (config_int(ports->items[k], "instances[].ports[]",
				       1, 65535, &n, err, errlen))
				return -1;
			d->container_ports[k] = (int)cp;
			d->loopback_ports[k] = (int)n;
		}
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

static int
config_site(const struct json *j, struct scm_site *s, char *err,
	    size_t errlen)
{
	const struct json *v;
	long long n;
	size_t i;

	if (!j || j->type != JSON_OBJECT) {
		snprintf(err, errlen, "sites[]: expected an object");
		return -1;
	}
	s->name = config_strdup(json_get(j, "name"), "sites[].name", err,
				errlen);
	if (!s->name)
		return -1;
	if (!(s->cert = config_strdup(json_get(j, "cert"), "cert", err,
				      errlen)) ||
	    !(s->key = config_strdup(json_get(j, "key"), "key", err, errlen)))
		return -1;

	v = json_get(j, "basic");
	if (v && v->type != JSON_NULL) {
		if (v->type != JSON_ARRAY || v->count != 2) {
			snprintf(err, errlen, "site %s: basic: expected null "
				 "or [user, password]", s->name);
			return -1;
		}
		if (!(s->basic_user = config_strdup(v->items[0], "basic[0]",
						    err, errlen)) ||
		    !(s->basic_password = config_strdup(v->items[1],
							"basic[1]", err,
							errlen)))
			return -1;
	}

	v = json_get(j, "bearer");
	if (v && v->type != JSON_NULL) {
		if (v->type != JSON_ARRAY) {
			snprintf(err, errlen, "site %s: bearer: expected an "
				 "array", s->name);
			return -1;
		}
		s->bearer = calloc(v->count + 1, sizeof(char *));
		if (!s->bearer) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		for (i = 0; i < v->count; i++) {
			s->bearer[i] = config_strdup(v->items[i], "bearer[]",
						     err, errlen);
			if (!s->bearer[i])
				return -1;
			s->nbearer++;
		}
	}

	v = json_get(j, "state");
	s->state = v ? config_strdup(v, "state", err, errlen)
		     : strdup("STARTED");
	if (!s->state)
		return -1;
	if (strcmp(s->state, "STARTED") && strcmp(s->state, "STOPPED") &&
	    strcmp(s->state, "STARTING")) {
		snprintf(err, errlen, "site %s: state must be STARTED, STOPPED "
			 "or STARTING", s->name);
		return -1;
	}

	if (config_time(json_get(j, "starting_until"), s->name,
			"starting_until", &s->starting_until, err, errlen) ||
	    config_time(json_get(j, "unavailable_until"), s->name,
			"unavailable_until", &s->unavailable_until, err,
			errlen))
		return -1;

	v = json_get(j, "default_port");
	s->default_port = 2222;
	if (v) {
		if (config_int(v, "default_port", 1, 65535, &n, err, errlen))
			return -1;
		s->default_port = (int)n;
	}

	if (config_instances(json_get(j, "instances"), s, err, errlen) ||
	    config_exec_refusal(json_get(j, "exec_refusal"), s, err, errlen) ||
	    config_bool(json_get(j, "ip_forbidden"), "ip_forbidden", s,
			&s->ip_forbidden, err, errlen) ||
	    config_bool(json_get(j, "bearer_forbidden"), "bearer_forbidden", s,
			&s->bearer_forbidden, err, errlen) ||
	    config_bool(json_get(j, "ssh_disabled"), "ssh_disabled", s,
			&s->ssh_disabled, err, errlen) ||
	    config_containers(json_get(j, "sitecontainers"), s, err, errlen))
		return -1;
	return config_fault(json_get(j, "fault"), &s->fault, err, errlen);
}

/* An optional local service, name: {"port": N, "token": T, ...}. */
static int
config_service(const struct json *j, const char *name,
	       struct scm_service *svc, char *err, size_t errlen)
{
	char what[32];
	long long n;
	size_t len, i;

	if (!j || j->type == JSON_NULL)
		return 0;
	if (j->type != JSON_OBJECT) {
		snprintf(err, errlen, "%s: expected null or an object "
			 "{port, token}", name);
		return -1;
	}
	snprintf(what, sizeof(what), "%s.port", name);
	if (config_int(json_get(j, "port"), what, 1, 65535, &n, err, errlen))
		return -1;
	svc->port = (int)n;
	snprintf(what, sizeof(what), "%s.token", name);
	svc->token = config_strdup(json_get(j, "token"), what, err, errlen);
	if (!svc->token)
		return -1;
	/* it goes into a header line as it is */
	len = strlen(svc->token);
	if (!len || len > SCM_SERVICE_TOKEN_MAX) {
		snprintf(err, errlen, "%s: 1 to %d characters", what,
			 SCM_SERVICE_TOKEN_MAX);
		return -1;
	}
	for (i = 0; i < len; i++)
		if (svc->token[i] <= ' ' || svc->token[i] >= 127) {
			snprintf(err, errlen, "%s: visible ASCII only", what);
			return -1;
		}
	return 0;
}

/* Optional "webssh": {"port": N, "token": T[, "session_seconds": S]}. */
static int
config_webssh(const struct json *j, struct scm_config *cfg, char *err,
	      size_t errlen)
{
	const struct json *v;
	long long n;

	if (config_service(j, "webssh", &cfg->webssh, err, errlen))
		return -1;
	cfg->webssh_session_seconds = 8 * 3600;
	if (cfg->webssh.port && (v = json_get(j, "session_seconds"))) {
		if (config_int(v, "webssh.session_seconds", 1, 30 * 86400, &n,
			       err, errlen))
			return -1;
		cfg->webssh_session_seconds = (int)n;
	}
	return 0;
}

static int
config_parse(const char *text, size_t len, struct scm_config *cfg, char *err,
	     size_t errlen)
{
	const struct json *v, *sites;
	char jerr[200];
	struct json *root;
	long long n;
	size_t i, k;
	int rc = -1;

	memset(cfg, 0, sizeof(*cfg));
	root = json_parse(text, len, jerr, sizeof(jerr));
	if (!root) {
		snprintf(err, errlen, "bad JSON: %s", jerr);
		return -1;
	}
	v = json_get(root, "listen");
	cfg->listen = v ? config_strdup(v, "listen", err, errlen)
			: strdup("127.0.0.1");
	if (!cfg->listen)
		goto done;
	if (!(cfg->ready_file = config_strdup(json_get(root, "ready_file"),
					      "ready_file", err, errlen)))
		goto done;
	cfg->keepalive_seconds = 15;
	if ((v = json_get(root, "keepalive_seconds"))) {
		if (config_int(v, "keepalive_seconds", 0, 86400, &n, err,
			       errlen))
			goto done;
		cfg->keepalive_seconds = (int)n;
	}
	if ((v = json_get(root, "keepalive_kind"))) {
		if (v->type != JSON_STRING || (strcmp(v->string, "ping") &&
					       strcmp(v->string, "pong"))) {
			snprintf(err, errlen, "keepalive_kind: \"ping\" or "
				 "\"pong\"");
			goto done;
		}
		cfg->keepalive_pong = !strcmp(v->string, "pong");
	}
	if (config_webssh(json_get(root, "webssh"), cfg, err, errlen) ||
	    config_service(json_get(root, "exec"), "exec", &cfg->exec, err,
			   errlen))
		goto done;
	sites = json_get(root, "sites");
	if (!sites || sites->type != JSON_ARRAY || !sites->count) {
		snprintf(err, errlen, "sites: expected a non-empty array");
		goto done;
	}
	cfg->sites = calloc(sites->count, sizeof(*cfg->sites));
	if (!cfg->sites) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	cfg->nsites = sites->count;
	for (i = 0; i < sites->count; i++) {
		if (config_site(sites->items[i], &cfg->sites[i], err, errlen))
			goto done;
		for (k = 0; k < i; k++)
			if (!strcmp(cfg->sites[k].name, cfg->sites[i].name)) {
				snprintf(err, errlen, "duplicate site %s",
					 cfg->sites[i].name);
				goto done;
			}
	}
	rc = 0;
done:
	json_free(root);
	if (rc)
		config_free(cfg);
	return rc;
}

int
config_load(const char *path, struct scm_config *cfg, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	text = malloc(CONFIG_MAX_BYTES);
	if (!text) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	len = fread(text, 1, CONFIG_MAX_BYTES, f);
	if (ferror(f) || len == CONFIG_MAX_BYTES) {
		snprintf(err, errlen, "%s: read error or file too large", path);
		fclose(f);
		free(text);
		return -1;
	}
	fclose(f);
	rc = config_parse(text, len, cfg, err, errlen);
	free(text);
	return rc;
}

#define CONFIG_SWAP(a, b) do { __typeof__(a) t_ = (a); (a) = (b); (b) = t_; } \
	while (0)

int
config_reload(struct scm_config *cur, const char *path, char *err,
	      size_t errlen)
{
	struct scm_config next;
	size_t i, k;

	if (config_load(path, &next, err, errlen))
		return -1;
	pthread_rwlock_wrlock(&config_lock);
	for (i = 0; i < cur->nsites; i++) {
		struct scm_site *a = &cur->sites[i], *b = NULL;

		for (k = 0; k < next.nsites; k++)
			if (!strcmp(next.sites[k].name, a->name))
				b = &next.sites[k];
		if (!b) {
			scm_log(SCM_LOG_WARN, "reload: site %s missing, kept "
				"as is\n", a->name);
			continue;
		}
		/* Swap so that freeing `next` frees the old values. */
		CONFIG_SWAP(a->basic_user, b->basic_user);
		CONFIG_SWAP(a->basic_password, b->basic_password);
		CONFIG_SWAP(a->bearer, b->bearer);
		CONFIG_SWAP(a->nbearer, b->nbearer);
		CONFIG_SWAP(a->state, b->state);
		a->starting_until = b->starting_until;
		a->unavailable_until = b->unavailable_until;
		a->fault = b->fault;
		a->exec_refusal_status = b->exec_refusal_status;
		CONFIG_SWAP(a->exec_refusal_body, b->exec_refusal_body);
		a->default_port = b->default_port;
		CONFIG_SWAP(a->instances, b->instances);
		CONFIG_SWAP(a->ninstances, b->ninstances);
		a->ip_forbidden = b->ip_forbidden;
		a->bearer_forbidden = b->bearer_forbidden;
		a->ssh_disabled = b->ssh_disabled;
		CONFIG_SWAP(a->containers, b->containers);
		CONFIG_SWAP(a->container_bodies, b->container_bodies);
		CONFIG_SWAP(a->ncontainers, b->ncontainers);
	}
	cur->keepalive_seconds = next.keepalive_seconds;
	cur->keepalive_pong = next.keepalive_pong;
	cur->webssh.port = next.webssh.port;
	CONFIG_SWAP(cur->webssh.token, next.webssh.token);
	cur->webssh_session_seconds = next.webssh_session_seconds;
	cur->exec.port = next.exec.port;
	CONFIG_SWAP(cur->exec.token, next.exec.token);
	pthread_rwlock_unlock(&config_lock);
	config_free(&next);
	return 0;
}

void
config_free(struct scm_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nsites; i++)
		config_free_site(&cfg->sites[i]);
	free(cfg->sites);
	free(cfg->listen);
	free(cfg->ready_file);
	free(cfg->webssh.token);
	free(cfg->exec.token);
	memset(cfg, 0, sizeof(*cfg));
}

const struct scm_instance *
config_route(const struct scm_site *site, const char *affinity)
{
	size_t i;

	if (affinity)
		for (i = 0; i < site->ninstances; i++)
			if (!strcmp(site->instances[i].name, affinity))
				return &site->instances[i];
	return &site->instances[0];
}

int
config_loopback_port(const struct scm_instance *inst, int container_port)
{
	size_t i;

	for (i = 0; i < inst->nports; i++)
		if (inst->container_ports[i] == container_port)
			return inst->loopback_ports[i];
	return -1;
}

static double
config_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

const char *
config_state(const struct scm_site *site)
{
	if (config_now() < site->starting_until)
		return "STARTING";
	return site->state;
}

int
config_site_container(const struct scm_site *site, const char *name,
		      char *out, size_t outlen)
{
	size_t i;

	for (i = 0; i < site->ncontainers; i++)
		if (!strcmp(site->containers[i], name)) {
			snprintf(out, outlen, "%s", site->container_bodies[i]);
			return 0;
		}
	return -1;
}

int
config_unavailable(const struct scm_site *site)
{
	return config_now() < site->unavailable_until;
}
