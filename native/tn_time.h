/*
 * tn_time.h - absolute deadlines for pthread_cond_timedwait, which takes
 * CLOCK_REALTIME time, not a duration.
 */
#ifndef TN_TIME_H
#define TN_TIME_H

#include <time.h>

static inline struct timespec tn_time_deadline(int timeout_ms)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += timeout_ms / 1000;
	t.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

#endif
