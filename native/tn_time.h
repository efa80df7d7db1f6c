/*
 * tn_time.h - deadlines and timed waits on the monotonic clock, so that a
 * wall-clock step (NTP, a suspended VM) neither ends a wait early nor
 * makes it hang: condition variables are created for CLOCK_MONOTONIC.
 */
#ifndef TN_TIME_H
#define TN_TIME_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Slices of the waits Python makes, between which it runs signal
 * handlers: a signal is answered within this much. */
#define TN_TIME_SLICE_MS	200

static inline int64_t tn_time_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* An absolute CLOCK_MONOTONIC time for pthread_cond_timedwait on a
 * condition variable made by tn_time_cond_init. */
static inline struct timespec tn_time_deadline(int timeout_ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += timeout_ms / 1000;
	t.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

static inline int tn_time_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	int rc;

	if (pthread_condattr_init(&a))
		return -1;
	rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC) || pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
	return rc ? -1 : 0;
}

#endif
