/*
 * tn_events.c - bounded native event queue (see tn_events.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tn_events.h"

int tn_events_init(struct tn_events *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->wake_fd = -1;
	ev->q = calloc(TN_EVENTS_MAX, sizeof(*ev->q));
	if (!ev->q)
		return -1;
	ev->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ev->wake_fd < 0) {
		free(ev->q);
		ev->q = NULL;
		return -1;
	}
	if (pthread_mutex_init(&ev->mu, NULL)) {
		close(ev->wake_fd);
		free(ev->q);
		ev->q = NULL;
		return -1;
	}
	return 0;
}

void tn_events_destroy(struct tn_events *ev)
{
	if (!ev->q)
		return;
	pthread_mutex_destroy(&ev->mu);
	close(ev->wake_fd);
	free(ev->q);
	ev->q = NULL;
}

void tn_events_wake(struct tn_events *ev)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: a wake is pending. */
	if (write(ev->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return;
}

int tn_events_push(struct tn_events *ev, const struct tn_event *e)
{
	int rc = 0;

	pthread_mutex_lock(&ev->mu);
	if (ev->len == TN_EVENTS_MAX) {
		ev->dropped++;	/* never block the service thread */
		rc = -1;
	} else {
		ev->q[(ev->head + ev->len) % TN_EVENTS_MAX] = *e;
		ev->len++;
	}
	pthread_mutex_unlock(&ev->mu);
	tn_events_wake(ev);
	return rc;
}

unsigned tn_events_drain(struct tn_events *ev, struct tn_event *out, unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&ev->mu);
	while (n < max && ev->len) {
		out[n++] = ev->q[ev->head];
		ev->head = (ev->head + 1) % TN_EVENTS_MAX;
		ev->len--;
	}
	pthread_mutex_unlock(&ev->mu);
	return n;
}

int tn_events_wait(struct tn_events *ev, int timeout_ms)
{
	struct pollfd pfd = { .fd = ev->wake_fd, .events = POLLIN };
	uint64_t v;
	int n;

	n = poll(&pfd, 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? -1 : 0;
	if (n == 0)
		return 0;
	/* reset the counter; a racing push re-arms it, which is harmless */
	if (read(ev->wake_fd, &v, sizeof(v)) < 0)
		return 1;
	return 1;
}
