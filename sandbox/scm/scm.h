/*
 * scm.h - shared types and module interfaces of the sandbox SCM server.
 *
 * One thread accepts on every site's TLS listener; each connection then has
 * a thread of its own (plain HTTP first, perhaps a tunnel after the upgrade),
 * so no connection waits on another and a tunnel's data path is a tight loop
 * over two non-blocking sockets.
 *
 * Modules (one prefix each):
 *   scm_main.c    main_    process set-up, listeners, accept loop, signals
 *   scm_config.c  config_  the config file: load, reload, routing look-ups
 *   scm_json.c    json_    the JSON reader used by config_
 *   scm_ready.c   ready_   the ready file (atomic write)
 *   scm_auth.c    auth_    Basic / Bearer checks
 *   scm_tls.c     tls_     per-site TLS contexts and socket I/O over TLS
 *   scm_http.c    http_    a connection's requests: GetStatus, /api/settings,
 *                          refusals, the WebSocket upgrade
 *   scm_ws.c      ws_      RFC 6455 server-side framing
 *   scm_probe.c   probe_   "can reach port": a real TCP connect
 *   scm_relay.c   relay_   the WebSocket <-> container-port data path
 *   scm_stop.c    stop_    the shutdown as a descriptor every wait polls
 *   scm_proxy.c   proxy_   a request forwarded to a local service: head
 *                          filtering, answers of our own, the raw relay
 *   scm_webssh.c  webssh_  /webssh/: auth, session cookie, instance, then
 *                          proxy_ to the local web SSH service
 *   scm_exec.c    exec_    /exec/: auth, refusals, instance, then proxy_ to
 *                          the local exec service
 *   scm_walls.c   walls_   real Azure's walls in front of a site: access
 *                          restrictions, missing rights, SSH turned off
 */
#ifndef SCM_H
#define SCM_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <time.h>

#include <openssl/ssl.h>

#define SCM_TUNNEL_PATH "/AppServiceTunnel/Tunnel.ashx"
/* The real server's default read size from the container port. */
#define SCM_DEFAULT_READ 65536
/* The container's SSH port, which a site's ssh_disabled closes. */
#define SCM_SSH_PORT 2222
/* What the SCM site says when SSH is turned off (inferred: docs/PROTOCOL.md
 * section 9). */
#define SCM_SSH_DISABLED "SSH is disabled for this app."
/* Largest AppsvcTunnelBuffer honoured. */
#define SCM_MAX_READ (256 * 1024)

/* Log levels, the bits of SCM_SERVER_LOG (errors and warnings by default). */
#define SCM_LOG_ERR 1
#define SCM_LOG_WARN 2
#define SCM_LOG_NOTICE 4
extern int scm_log_mask;
#define scm_log(level, ...) \
	do { \
		if (scm_log_mask & (level)) \
			fprintf(stderr, "scm-server: " __VA_ARGS__); \
	} while (0)

/* The reason phrase of an HTTP status this server answers with. */
static inline const char *
scm_reason(unsigned status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 202: return "Accepted";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

/* Milliseconds on the monotonic clock: every deadline in the server. */
static inline long long
scm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

	/* Mutable: replaced in place by SIGHUP (config_reload), so read them
	 * only between config_read_begin() and config_read_end(). */
	char *basic_user, *basic_password;	/* NULL: Basic disabled */
	char **bearer;
	size_t nbearer;
	char *state;				/* STARTED / STOPPED / STARTING */
	double starting_until;			/* Unix time */
	double unavailable_until;		/* Unix time: the front end's 503 until then */
	struct scm_fault fault;
	unsigned exec_refusal_status;		/* 0: /exec/ is served */
	char *exec_refusal_body;		/* its JSON body otherwise */
	int default_port;
	struct scm_instance *instances;
	size_t ninstances;
	int ip_forbidden;			/* walls (scm_walls.c) */
	int bearer_forbidden;
	int ssh_disabled;
	char **containers;			/* /api/sitecontainers[/NAME]: */
	char **container_bodies;		/* names ("" the list), bodies */
	size_t ncontainers;

	/* Runtime. */
	SSL_CTX *tls;
	int listen_fd;
	int port;				/* bound listener port */
};

/* Longest local service token accepted from the config. */
#define SCM_SERVICE_TOKEN_MAX 256
/* Longest exec_refusal body accepted from the config. */
#define SCM_EXEC_REFUSAL_MAX 1024

/* A local service that a path is proxied to. */
struct scm_service {
	int port;		/* 0: none */
	char *token;
};

struct scm_config {
	char *listen;
	char *ready_file;
	int keepalive_seconds;	/* mutable, like the site fields */
	int keepalive_pong;	/* 1: unsolicited Pong, 0: Ping */
	struct scm_service webssh;	/* mutable too */
	int webssh_session_seconds;
	struct scm_service exec;
	struct scm_site *sites;
	size_t nsites;
};

/* scm_config.c */
int config_load(const char *path, struct scm_config *cfg, char *err,
		size_t errlen);
int config_reload(struct scm_config *cur, const char *path, char *err,
		  size_t errlen);
void config_free(struct scm_config *cfg);
void config_read_begin(void);
void config_read_end(void);
const struct scm_instance *config_route(const struct scm_site *site,
					const char *affinity);
int config_loopback_port(const struct scm_instance *inst, int container_port);
const char *config_state(const struct scm_site *site);
/* A /api/sitecontainers answer ("" the list) copied into out (under
 * config_read_begin); -1 when the site has no such container. */
int config_site_container(const struct scm_site *site, const char *name,
			  char *out, size_t outlen);
/* The site is restarting behind the front end (unavailable_until is ahead). */
int config_unavailable(const struct scm_site *site);

/* scm_ready.c */
int ready_write(const struct scm_config *cfg, unsigned long generation,
		const char *error);

/* scm_auth.c (under config_read_begin) */
int auth_check(const struct scm_site *site, const char *authorization);

/* scm_stop.c: stop_init once at start-up; stop_begin when the server stops;
 * stop_fd is readable from then on (never drained). */
int stop_init(void);
void stop_begin(void);
int stop_fd(void);

/* scm_probe.c */
int probe_tcp(int port, int timeout_ms);
int probe_connect(int port, int timeout_ms);

/* scm_tls.c: blocking-style calls take a timeout; the relay's are
 * non-blocking and report what to wait for (POLLIN / POLLOUT). */
int tls_site_init(struct scm_site *site, char *err, size_t errlen);
SSL *tls_accept(SSL_CTX *ctx, int fd, int timeout_ms);
ssize_t tls_read(SSL *ssl, int fd, void *buf, size_t len, int timeout_ms);
int tls_write_all(SSL *ssl, int fd, const void *buf, size_t len,
		  int timeout_ms);
ssize_t tls_read_nb(SSL *ssl, void *buf, size_t len, short *wait);
ssize_t tls_write_nb(SSL *ssl, const void *buf, size_t len, short *wait);
void tls_close(SSL *ssl, int fd, int notify);

/* Where a tunnel goes: instance by ARRAffinity, port by AppsvcTunnelPort,
 * message size by AppsvcTunnelBuffer. */
struct scm_route {
	int container_port;
	int loopback_port;	/* -1: cannot reach (no mapping) */
	size_t read_size;
};

/* One accepted connection; its thread owns it. */
struct scm_conn {
	int fd;
	SSL *ssl;
	struct scm_site *site;
	const struct scm_config *cfg;
	int abort;	/* end without close_notify (the "drop" fault) */
};

/* scm_http.c: the thread of one connection (arg: struct scm_conn *). */
void *http_thread(void *arg);

/* scm_relay.c */
void relay_run(struct scm_conn *c, const struct scm_route *route,
	       const unsigned char *early, size_t early_len);
size_t relay_open_count(void);

/* A request for a local service, handed over before http_parse's in-place
 * decoding could alter its head. */
struct proxy_request {
	const char *raw;		/* the head as received, CRLF CRLF
					 * included, NUL-terminated */
	size_t raw_len;
	const char *authorization;	/* NULL: none */
	const char *cookie;		/* every Cookie header, joined */
	int upgrade;			/* Upgrade: websocket */
	const unsigned char *early;	/* bytes read after the head */
	size_t early_len;
};

/* scm_proxy.c */
#define PROXY_NAME_MAX 256		/* a site or instance name, a header */
#define PROXY_MESSAGE_MAX 1024		/* an answer's message */
#define PROXY_ADDED_MAX 2048		/* the header lines added */
enum proxy_style { PROXY_TEXT, PROXY_JSON };	/* our answers' bodies */
struct proxy;
int proxy_wants(const char *head);
int proxy_path(const char *path, const char *prefix);
int proxy_cookie_next(const char **p, const char *name, const char **val,
		      size_t *len);
void proxy_affinity(const char *cookies, char *out, size_t outlen);
struct proxy *proxy_open(struct scm_conn *c, const struct proxy_request *rq,
			 enum proxy_style style, const char *what);
int proxy_undecided(const struct proxy *p);
void proxy_answer(struct proxy *p, unsigned status, const char *message);
void proxy_answer_body(struct proxy *p, unsigned status, const char *ctype,
		       const char *body);
void proxy_forward(struct proxy *p, int port, const char *extra,
		   const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void proxy_finish(struct proxy *p);
size_t proxy_open_count(void);

/* scm_webssh.c */
int webssh_init(void);
int webssh_path(const char *path);
int webssh_proxy(struct scm_conn *c, const struct proxy_request *rq);

/* scm_walls.c */
int walls_front(struct scm_conn *c, const char *authorization);
int walls_ssh_off(const struct scm_site *site, int container_port);

/* scm_exec.c */
int exec_path(const char *path);
int exec_proxy(struct scm_conn *c, const struct proxy_request *rq);

#endif
