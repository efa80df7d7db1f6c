/*
 * scm_stop.c - the server's shutdown as a descriptor: readable once the
 * shutdown has begun, and never drained, so that every wait of every thread
 * (a tunnel's poll, a web SSH proxy's, a probe's connect) can end on it.
 * Below every module that waits; it depends on nothing but scm.h's log.
 */
#include "scm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int stop_pipe[2] = { -1, -1 };

int
stop_init(void)
{
	return pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK);
}

void
stop_begin(void)
{
	char b = 0;

	if (write(stop_pipe[1], &b, 1) < 0)
		scm_log(SCM_LOG_WARN, "cannot signal the shutdown: %s\n",
			strerror(errno));
}

/* -1 before stop_init (poll ignores it). */
int
stop_fd(void)
{
	return stop_pipe[0];
}
