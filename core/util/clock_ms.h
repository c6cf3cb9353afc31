/*
 * clock_ms.h: the monotonic clock in milliseconds, for deadlines and
 * durations (never for wall-clock time). Header-only, so the static agent
 * and the plugins use it without linking anything.
 */
#ifndef HUTCH_CLOCK_MS_H
#define HUTCH_CLOCK_MS_H

#include <stdint.h>
#include <time.h>

static inline int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
