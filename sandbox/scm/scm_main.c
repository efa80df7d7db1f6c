/*
 * scm_main.c - the sandbox SCM (Kudu) server: scm-server CONFIG.json
 *
 * Process set-up and the accept loop: one TLS listener per site on port 0,
 * the ready file, signals.  Every accepted connection gets a thread of its
 * own (scm_http.c).  Signals and the parent watch come into the loop on
 * pipes, so nothing but write() runs in a signal handler.
 *
 * Environment:
 *   SCM_SERVER_PARENT_FD  read end of a pipe whose write end the launcher
 *                         keeps; EOF (launcher died) -> exit 0.
 *   SCM_SERVER_LOG        log level bitmask: 1 errors, 2 warnings, 4 notices
 *                         (default errors+warnings).
 */
#include "scm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* On SIGTERM, how long open tunnels get to flush and close with 1011. */
#define MAIN_DRAIN_MS 1500
/* Connection threads keep their buffers on the heap. */
#define MAIN_THREAD_STACK (256 * 1024)
#define MAIN_BACKLOG 4096

int scm_log_mask = SCM_LOG_ERR | SCM_LOG_WARN;

static volatile sig_atomic_t main_stop, main_reload;
static int main_sig_pipe[2] = { -1, -1 };
static int main_parent_fd = -1;
static pthread_attr_t main_thread_attr;

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

static void
main_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		scm_log(SCM_LOG_WARN, "setrlimit: %s\n", strerror(errno));
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
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGHUP, &sa, NULL) || sigaction(SIGTERM, &sa, NULL) ||
	    sigaction(SIGINT, &sa, NULL)) {
		fprintf(stderr, "scm-server: sigaction: %s\n", strerror(errno));
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int
main_parent_watch(void)
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
	return 0;
}

static int
main_listen(const char *iface, int *port_out)
{
	struct addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	if (getaddrinfo(iface, "0", &hints, &ai) || !ai)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) ||
	    listen(fd, MAIN_BACKLOG) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	*port_out = ntohs(ss.ss_family == AF_INET6 ?
			  ((struct sockaddr_in6 *)&ss)->sin6_port :
			  ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static int
main_sites(struct scm_config *cfg)
{
	char err[512];
	size_t i;

	for (i = 0; i < cfg->nsites; i++) {
		struct scm_site *s = &cfg->sites[i];

		s->listen_fd = -1;
		if (tls_site_init(s, err, sizeof(err))) {
			fprintf(stderr, "scm-server: %s\n", err);
			return -1;
		}
		s->listen_fd = main_listen(cfg->listen, &s->port);
		if (s->listen_fd < 0) {
			fprintf(stderr, "scm-server: site %s: cannot listen "
				"on %s: %s\n", s->name, cfg->listen,
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void
main_accept(struct scm_config *cfg, struct scm_site *site)
{
	struct scm_conn *c;
	pthread_t t;
	int fd, one = 1;

	for (;;) {
		fd = accept4(site->listen_fd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				scm_log(SCM_LOG_WARN, "accept: %s\n",
					strerror(errno));
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->site = site;
		c->cfg = cfg;
		if (pthread_create(&t, &main_thread_attr, http_thread, c)) {
			scm_log(SCM_LOG_WARN, "no thread for a connection\n");
			close(fd);
			free(c);
		}
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

/* Reads the control pipes; returns when the server should stop. */
static void
main_control(struct pollfd *p)
{
	unsigned char buf[64];
	ssize_t n, i;

	if (p[0].revents & POLLIN) {
		n = read(main_sig_pipe[0], buf, sizeof(buf));
		for (i = 0; i < n; i++) {
			if (buf[i] == SIGHUP)
				main_reload = 1;
			else
				main_stop = 1;
		}
	}
	if (p[1].fd >= 0 && p[1].revents) {
		n = read(main_parent_fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			scm_log(SCM_LOG_WARN, "launcher gone: exiting\n");
			main_stop = 1;
		}
	}
}

static int
main_loop(const char *path, struct scm_config *cfg)
{
	unsigned long generation = 1;
	struct pollfd *p;
	size_t i, n = cfg->nsites + 2;

	p = calloc(n, sizeof(*p));
	if (!p)
		return -1;
	p[0].fd = main_sig_pipe[0];
	p[1].fd = main_parent_fd;
	for (i = 0; i < n; i++)
		p[i].events = POLLIN;
	for (i = 0; i < cfg->nsites; i++)
		p[2 + i].fd = cfg->sites[i].listen_fd;
	while (!main_stop) {
		if (poll(p, (nfds_t)n, -1) < 0 && errno != EINTR) {
			fprintf(stderr, "scm-server: poll: %s\n",
				strerror(errno));
			free(p);
			return -1;
		}
		main_control(p);
		for (i = 0; i < cfg->nsites && !main_stop; i++)
			if (p[2 + i].revents & POLLIN)
				main_accept(cfg, &cfg->sites[i]);
		if (main_reload) {
			main_reload = 0;
			main_do_reload(path, cfg, &generation);
		}
	}
	free(p);
	return 0;
}

/* End tunnels as the real SCM does, and web SSH proxies, bounded in time. */
static void
main_drain(void)
{
	struct timespec pause = { 0, 2 * 1000 * 1000 };
	int waited = 0;

	stop_begin();
	while ((relay_open_count() || proxy_open_count()) &&
	       waited < MAIN_DRAIN_MS) {
		nanosleep(&pause, NULL);
		waited += 2;
	}
}

int
main(int argc, char **argv)
{
	struct scm_config cfg;
	const char *lvl;
	char err[512];
	int rc = 1;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: scm-server CONFIG.json\n");
		return 2;
	}
	lvl = getenv("SCM_SERVER_LOG");
	if (lvl && *lvl)
		scm_log_mask = atoi(lvl);
	if (config_load(argv[1], &cfg, err, sizeof(err))) {
		fprintf(stderr, "scm-server: %s\n", err);
		return 1;
	}
	main_raise_nofile();
	if (main_signals() || main_parent_watch() || stop_init() ||
	    webssh_init() ||
	    pthread_attr_init(&main_thread_attr) ||
	    pthread_attr_setstacksize(&main_thread_attr, MAIN_THREAD_STACK) ||
	    pthread_attr_setdetachstate(&main_thread_attr,
					PTHREAD_CREATE_DETACHED) ||
	    main_sites(&cfg) || ready_write(&cfg, 1, NULL))
		goto out;
	if (main_loop(argv[1], &cfg))
		goto out;
	main_drain();
	rc = 0;
out:
	/*
	 * Connection threads may still be running and reading the config:
	 * leave without freeing it or running exit handlers (OpenSSL's would
	 * free what they use).
	 */
	fflush(NULL);
	_exit(rc);
}
