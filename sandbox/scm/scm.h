/*
 * scm.h - shared types and module interfaces of the sandbox SCM server.
 *
 * Modules (one prefix each):
 *   scm_main.c    main_    process set-up, lws context and vhosts, signals
 *   scm_config.c  config_  the config file: load, reload, routing look-ups
 *   scm_json.c    json_    the JSON reader used by config_
 *   scm_ready.c   ready_   the ready file (atomic write)
 *   scm_auth.c    auth_    Basic / Bearer checks
 *   scm_http.c    http_    plain HTTP: GetStatus, /api/settings, refusals
 *   scm_probe.c   probe_   "can reach port": a real TCP connect
 *   scm_relay.c   relay_   the WebSocket <-> container-port data path
 */
#ifndef SCM_H
#define SCM_H

#include <stddef.h>
#include <libwebsockets.h>

#define SCM_TUNNEL_PATH "/AppServiceTunnel/Tunnel.ashx"
#define SCM_TARGET_HOST "127.0.0.1"
/* The real server's default read size from the container port. */
#define SCM_DEFAULT_READ 65536
/* Largest AppsvcTunnelBuffer honoured; also sizes lws's per-thread buffer. */
#define SCM_MAX_READ (256 * 1024)

struct scm_instance {
	char *name;
	size_t nports;
	int *container_ports;	/* parallel arrays: container -> loopback */
	int *loopback_ports;
};

enum scm_fault_kind {
	SCM_FAULT_NONE,
	SCM_FAULT_REFUSE,	/* value: HTTP status for the upgrade */
	SCM_FAULT_DROP,		/* value: bytes, then close without a frame */
	SCM_FAULT_STALL		/* value: bytes, then relay nothing more */
};

struct scm_fault {
	enum scm_fault_kind kind;
	long long value;
};

struct scm_site {
	char *name;
	char *cert, *key;

	/* Mutable: replaced in place by SIGHUP (config_reload). */
	char *basic_user, *basic_password;	/* NULL: Basic disabled */
	char **bearer;
	size_t nbearer;
	char *state;				/* STARTED / STOPPED / STARTING */
	double starting_until;			/* Unix time */
	struct scm_fault fault;
	int default_port;
	struct scm_instance *instances;
	size_t ninstances;

	/* Runtime. */
	struct lws_vhost *vhost;
	int port;				/* bound listener port */
};

struct scm_config {
	char *listen;
	char *ready_file;
	int keepalive_seconds;
	int keepalive_pong;	/* 1: unsolicited Pong, 0: Ping */
	struct scm_site *sites;
	size_t nsites;
};

/* scm_config.c */
int config_load(const char *path, struct scm_config *cfg, char *err,
		size_t errlen);
int config_reload(struct scm_config *cur, const char *path, char *err,
		  size_t errlen);
void config_free(struct scm_config *cfg);
const struct scm_instance *config_route(const struct scm_site *site,
					const char *affinity);
int config_loopback_port(const struct scm_instance *inst, int container_port);
const char *config_state(const struct scm_site *site);

/* scm_ready.c */
int ready_write(const struct scm_config *cfg, unsigned long generation,
		const char *error);

/* scm_auth.c */
int auth_check(const struct scm_site *site, const char *authorization);

/* scm_probe.c */
int probe_tcp(int port, int timeout_ms);

/* Routing of a tunnel request: instance by ARRAffinity, port by
 * AppsvcTunnelPort, read size by AppsvcTunnelBuffer. */
struct scm_route {
	int container_port;
	int loopback_port;	/* -1: cannot reach (no mapping) */
	size_t read_size;
};

#define SCM_HTTP_BODY_MAX 256

/* Per connection of protocol[0]: used as HTTP first, maybe WS later. */
struct scm_pss {
	char body[SCM_HTTP_BODY_MAX];	/* pending response body */
	size_t body_len;
	struct scm_route route;		/* set when a WebSocket is accepted */
	void *relay;			/* struct relay, owned by scm_relay.c */
};

/* scm_http.c: the callback of each vhost's first protocol (HTTP and WS). */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason,
		  void *user, void *in, size_t len);
int http_route(struct lws *wsi, const struct scm_site *site,
	       struct scm_route *route);

/* scm_relay.c (keep-alive settings come from the context user, the config) */
int relay_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      struct scm_site *site, const struct scm_route *route,
		      void **relay_slot, void *in, size_t len);
int relay_target_callback(struct lws *wsi, enum lws_callback_reasons reason,
			  void *user, void *in, size_t len);
void relay_end_all(void);
size_t relay_open_count(void);
extern const lws_retry_bo_t relay_idle_policy;

#endif
