/*
 * cleanup.h: scope-bound release of heap memory, fds, FILE*s and DIR*s.
 *
 * A variable declared `_cleanup_free_ char *p = NULL;` is freed when it goes
 * out of scope, so every early return is leak-free. To hand ownership on,
 * move it visibly: `*out = p; p = NULL;` (or use steal_ptr()).
 */
#ifndef HUTCH_CLEANUP_H
#define HUTCH_CLEANUP_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_freep(void *p)
{
	free(*(void **)p);
}
static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void cleanup_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void cleanup_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}

#define _cleanup_free_ __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_ __attribute__((cleanup(cleanup_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(cleanup_fclosep)))
#define _cleanup_closedir_ __attribute__((cleanup(cleanup_closedirp)))

/* Returns *pp and sets it to NULL: the explicit ownership transfer. */
#define steal_ptr(pp)                                                          \
	({                                                                     \
		__typeof__(*(pp)) _stolen = *(pp);                             \
		*(pp) = NULL;                                                  \
		_stolen;                                                       \
	})

/* Returns *fdp and sets it to -1. */
static inline int steal_fd(int *fdp)
{
	int fd = *fdp;
	*fdp = -1;
	return fd;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
