/*
 * scm_main.c - the sandbox SCM (Kudu) server: scm-server CONFIG.json
 *
 * Process set-up and the event loop: one lws context, one TLS vhost per site
 * listening on port 0, the ready file, and signals.  Signals and the parent
 * watch come into the loop as raw-file wsis on pipes, so nothing but write()
 * runs in a signal handler.
 *
 * Environment:
 *   SCM_SERVER_PARENT_FD  read end of a pipe whose write end the launcher
 *                         keeps; EOF (launcher died) -> exit 0.
 *   SCM_SERVER_LOG        lws log level bitmask (default errors+warnings).
 */
#include "scm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Bounds lws's per-fd tables even when the hard limit is huge. */
#define MAIN_FD_CAP 65536
#define MAIN_HEADER_POOL 256
#define MAIN_HEADER_DATA 16384
/* On SIGTERM, how long open tunnels get to flush and close with 1011. */
#define MAIN_DRAIN_USEC (1500 * 1000)

static volatile sig_atomic_t main_stop, main_reload;
static int main_sig_pipe[2] = { -1, -1 };
static int main_parent_fd = -1;

static void
main_on_signal(int sig)
{
	unsigned char b = (unsigned char)sig;
	int saved = errno;

	/* async-signal-safe: one byte into the self-pipe; the loop reads it */
	if (write(main_sig_pipe[1], &b, 1) < 0) {
		/* pipe full: a wake-up is already pending; set the flag too */
		if (sig == SIGHUP)
			main_reload = 1;
		else
			main_stop = 1;
	}
	errno = saved;
}

static int
main_control_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      void *user, void *in, size_t len)
{
	unsigned char buf[64];
	int fd = (int)lws_get_socket_fd(wsi);
	ssize_t n, i;

	(void)user;
	(void)in;
	(void)len;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		n = read(fd, buf, sizeof(buf));
		if (fd == main_parent_fd) {
			if (n == 0 || (n < 0 && errno != EAGAIN &&
				       errno != EINTR)) {
				lwsl_warn("launcher gone: exiting\n");
				main_stop = 1;
				return -1;
			}
			return 0;
		}
		for (i = 0; i < n; i++) {
			if (buf[i] == SIGHUP)
				main_reload = 1;
			else
				main_stop = 1;
		}
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (fd == main_parent_fd)
			main_stop = 1;
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols main_protocols[] = {
	/* first: serves HTTP and accepts the (protocol-less) WebSocket */
	{ "scm-http", http_callback, sizeof(struct scm_pss), SCM_DEFAULT_READ,
	  0, NULL, 0 },
	{ "scm-target", relay_target_callback, 0, 0, 0, NULL, 0 },
	{ "scm-control", main_control_callback, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }	/* terminator */
};

static unsigned int
main_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl)) {
		lwsl_warn("getrlimit: %s\n", strerror(errno));
		return 1024;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			lwsl_warn("setrlimit: %s\n", strerror(errno));
		if (getrlimit(RLIMIT_NOFILE, &rl))
			return 1024;
	}
	return rl.rlim_cur > MAIN_FD_CAP ? MAIN_FD_CAP
					 : (unsigned int)rl.rlim_cur;
}

static int
main_signals(void)
{
	struct sigaction sa;

	if (pipe2(main_sig_pipe, O_CLOEXEC | O_NONBLOCK)) {
		fprintf(stderr, "scm-server: pipe: %s\n", strerror(errno));
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = main_on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGHUP, &sa, NULL) || sigaction(SIGTERM, &sa, NULL) ||
	    sigaction(SIGINT, &sa, NULL)) {
		fprintf(stderr, "scm-server: sigaction: %s\n", strerror(errno));
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int
main_adopt(struct lws_vhost *vh, int fd)
{
	lws_sock_file_fd_type u;

	u.filefd = (lws_filefd_type)(intptr_t)fd;
	if (!lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u,
					"scm-control", NULL)) {
		fprintf(stderr, "scm-server: cannot watch fd %d\n", fd);
		return -1;
	}
	return 0;
}

static int
main_parent_watch(struct lws_vhost *vh)
{
	const char *s = getenv("SCM_SERVER_PARENT_FD");
	char *end;
	long fd;

	if (!s || !*s)
		return 0;
	fd = strtol(s, &end, 10);
	if (*end || fd < 0 || fd > 65535 || fcntl((int)fd, F_GETFD) < 0) {
		fprintf(stderr, "scm-server: SCM_SERVER_PARENT_FD=%s is not "
			"an open fd\n", s);
		return -1;
	}
	/* not for anything we might exec; never block the loop on it */
	if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) ||
	    fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) | O_NONBLOCK)) {
		fprintf(stderr, "scm-server: fcntl: %s\n", strerror(errno));
		return -1;
	}
	main_parent_fd = (int)fd;
	return main_adopt(vh, main_parent_fd);
}

static int
main_vhosts(struct lws_context *ctx, struct scm_config *cfg)
{
	struct lws_context_creation_info vi;
	size_t i;

	for (i = 0; i < cfg->nsites; i++) {
		struct scm_site *s = &cfg->sites[i];

		memset(&vi, 0, sizeof(vi));
		vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		vi.port = 0;	/* the kernel picks; read back below */
		vi.iface = cfg->listen;
		vi.vhost_name = s->name;
		vi.protocols = main_protocols;
		vi.ssl_cert_filepath = s->cert;
		vi.ssl_private_key_filepath = s->key;
		vi.alpn = "http/1.1";	/* the tunnel is HTTP/1.1 upgrade */
		vi.user = s;
		vi.retry_and_idle_policy = &relay_idle_policy;
		s->vhost = lws_create_vhost(ctx, &vi);
		if (!s->vhost) {
			fprintf(stderr, "scm-server: site %s: cannot create the "
				"TLS listener on %s (cert %s, key %s)\n",
				s->name, cfg->listen, s->cert, s->key);
			return -1;
		}
		s->port = lws_get_vhost_listen_port(s->vhost);
		if (s->port <= 0) {
			fprintf(stderr, "scm-server: site %s: no port bound\n",
				s->name);
			return -1;
		}
	}
	return 0;
}

static void
main_drain(struct lws_context *ctx)
{
	lws_usec_t deadline = lws_now_usecs() + MAIN_DRAIN_USEC;

	/* lws_service(-1) polls without blocking: nothing else would wake us
	 * at the deadline when a client never answers the close */
	while (relay_open_count() && lws_now_usecs() < deadline) {
		if (lws_service(ctx, -1) < 0)
			break;
		usleep(2000);
	}
}

static void
main_do_reload(const char *path, struct scm_config *cfg,
	       unsigned long *generation)
{
	char err[512];

	(*generation)++;
	if (config_reload(cfg, path, err, sizeof(err))) {
		fprintf(stderr, "scm-server: reload rejected, previous "
			"settings kept: %s\n", err);
		ready_write(cfg, *generation, err);
		return;
	}
	fprintf(stderr, "scm-server: reloaded (generation %lu)\n",
		*generation);
	ready_write(cfg, *generation, NULL);
}

int
main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct lws_context *ctx = NULL;
	unsigned long generation = 1;
	struct scm_config cfg;
	const char *lvl;
	char err[512];
	int rc = 1;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: scm-server CONFIG.json\n");
		return 2;
	}
	lvl = getenv("SCM_SERVER_LOG");
	lws_set_log_level(lvl ? atoi(lvl) : LLL_ERR | LLL_WARN, NULL);
	if (config_load(argv[1], &cfg, err, sizeof(err))) {
		fprintf(stderr, "scm-server: %s\n", err);
		return 1;
	}
	if (main_signals())
		goto out;

	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
		       LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.user = &cfg;
	info.fd_limit_per_thread = main_raise_nofile();
	/* lws reads into this; it bounds one read from the container */
	info.pt_serv_buf_size = SCM_MAX_READ + LWS_PRE;
	info.max_http_header_pool = MAIN_HEADER_POOL;
	info.max_http_header_data = MAIN_HEADER_DATA;	/* JWT bearer tokens */
	ctx = lws_create_context(&info);
	if (!ctx) {
		fprintf(stderr, "scm-server: lws_create_context failed\n");
		goto out;
	}
	if (main_vhosts(ctx, &cfg) ||
	    main_adopt(cfg.sites[0].vhost, main_sig_pipe[0]) ||
	    main_parent_watch(cfg.sites[0].vhost))
		goto out;
	if (ready_write(&cfg, generation, NULL))
		goto out;

	while (!main_stop) {
		if (lws_service(ctx, 0) < 0) {
			fprintf(stderr, "scm-server: lws_service failed\n");
			goto out;
		}
		if (main_reload) {
			main_reload = 0;
			main_do_reload(argv[1], &cfg, &generation);
		}
	}
	/* End tunnels as the real SCM does, bounded in time, then tear down. */
	relay_end_all();
	main_drain(ctx);
	rc = 0;
out:
	/* closes every connection (callbacks free relays) and adopted fds */
	if (ctx)
		lws_context_destroy(ctx);
	else if (main_sig_pipe[0] >= 0)
		close(main_sig_pipe[0]);
	if (main_sig_pipe[1] >= 0)
		close(main_sig_pipe[1]);
	config_free(&cfg);
	return rc;
}
