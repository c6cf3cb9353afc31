/*
 * netns.c: a sandbox's network namespace.
 *
 * A network namespace belongs to a thread, so a short-lived thread
 * unshares one, pins it with a bind mount of its /proc/thread-self/ns/net
 * on a file (as `ip netns add` does), and does the inside part of the
 * plumbing while it is there; the pool thread that asked never leaves the
 * host's namespace, and no process is forked.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "cleanup.h"
#include "egress.h"

typedef struct netns_job {
	const char *path;
	int (*inside)(void *arg, hutch_err_t *err);
	void *arg;
	int fd;
	int result;
	hutch_err_t err;
} netns_job_t;

static void *netns_thread(void *data)
{
	netns_job_t *job = data;
	hutch_err_t *err = &job->err;
	if (unshare(CLONE_NEWNET) < 0) {
		job->result = hutch_err_sys(err, errno, "unshare(CLONE_NEWNET)");
		return NULL;
	}
	_cleanup_close_ int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		job->result = hutch_err_sys(err, errno, "open /proc/thread-self/ns/net");
		return NULL;
	}
	int f = open(job->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (f < 0) {
		job->result = hutch_err_sys(err, errno, "create %s", job->path);
		return NULL;
	}
	close(f);
	char src[64];
	snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
	if (mount(src, job->path, NULL, MS_BIND, NULL) < 0) {
		job->result = hutch_err_sys(err, errno, "bind mount on %s", job->path);
		unlink(job->path);
		return NULL;
	}
	if (job->inside) {
		int r = job->inside(job->arg, err);
		if (r < 0) {
			job->result = r;
			umount2(job->path, MNT_DETACH);
			unlink(job->path);
			return NULL;
		}
	}
	job->fd = steal_fd(&fd);
	return NULL;
}

int eg_netns_create(const char *path, int (*inside)(void *arg, hutch_err_t *err), void *arg,
		    int *fd_out, hutch_err_t *err)
{
	netns_job_t job = {.path = path, .inside = inside, .arg = arg, .fd = -1};
	pthread_t t;
	int r = pthread_create(&t, NULL, netns_thread, &job);
	if (r != 0)
		return hutch_err_sys(err, r, "network namespace: thread");
	pthread_join(t, NULL);
	if (job.result < 0) {
		if (err)
			*err = job.err;
		return hutch_err_prefix(err, "network namespace");
	}
	if (fd_out)
		*fd_out = job.fd;
	else
		close(job.fd);
	return 0;
}

int eg_netns_remove(const char *path, hutch_err_t *err)
{
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return hutch_err_sys(err, errno, "unmount network namespace %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return hutch_err_sys(err, errno, "remove %s", path);
	return 0;
}
