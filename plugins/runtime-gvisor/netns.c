/*
 * netns.c: the private, loopback-only network namespace a sandbox gets when
 * the network chain gave it none, and the checks on any namespace a sandbox
 * is put in.
 *
 * A network namespace belongs to a thread, not a process, so a short-lived
 * thread can unshare one, bring its loopback up and hand back an fd to it
 * without forking a multi-threaded daemon. The namespace is then kept alive
 * by a bind mount of that fd on a file in the sandbox's directory, like
 * `ip netns add` does under /run/netns.
 */
#include <fcntl.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "nl_addr.h"

typedef struct netns_job {
	int fd;
	int error;
	const char *step;
} netns_job_t;

static void *netns_thread(void *arg)
{
	netns_job_t *job = arg;
	if (unshare(CLONE_NEWNET) < 0) {
		job->error = errno;
		job->step = "unshare(CLONE_NEWNET)";
		return NULL;
	}
	/* Loopback: the one interface a fresh namespace has, down. */
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		job->error = errno;
		job->step = "socket";
		return NULL;
	}
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	int r = ioctl(s, SIOCGIFFLAGS, &ifr);
	if (r == 0) {
		ifr.ifr_flags |= IFF_UP;
		r = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (r < 0) {
		job->error = errno;
		job->step = "bring loopback up";
		close(s);
		return NULL;
	}
	close(s);
	job->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (job->fd < 0) {
		job->error = errno;
		job->step = "open /proc/thread-self/ns/net";
	}
	return NULL;
}

int gv_netns_create(const char *path, hutch_err_t *err)
{
	netns_job_t job = {.fd = -1};
	pthread_t t;
	int r = pthread_create(&t, NULL, netns_thread, &job);
	if (r != 0)
		return hutch_err_sys(err, r, "network namespace: thread");
	pthread_join(t, NULL);
	if (job.error)
		return hutch_err_sys(err, job.error, "network namespace: %s", job.step);
	_cleanup_close_ int nsfd = job.fd;

	int f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (f < 0)
		return hutch_err_sys(err, errno, "network namespace: create %s", path);
	close(f);
	char src[64];
	snprintf(src, sizeof src, "/proc/self/fd/%d", nsfd);
	if (mount(src, path, NULL, MS_BIND, NULL) < 0) {
		int e = errno;
		unlink(path);
		return hutch_err_sys(err, e, "network namespace: bind mount on %s", path);
	}
	return 0;
}

static bool same_file(const struct stat *a, const char *path)
{
	struct stat b;
	return stat(path, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

int gv_netns_open(const char *path, int *fd_out, hutch_err_t *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hutch_err_sys(err, errno, "network namespace %s", path);
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type < 0)
		return hutch_err_sys(err, errno, "network namespace %s: not a namespace file",
				     path);
	if (type != CLONE_NEWNET)
		return hutch_err_set(err, EINVAL, "%s is not a network namespace", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return hutch_err_sys(err, errno, "network namespace %s", path);
	/* A sandbox never runs in the host's network: neither hutchd's own
	 * namespace nor the initial one. */
	if (same_file(&st, "/proc/self/ns/net") || same_file(&st, "/proc/1/ns/net"))
		return hutch_err_set(err, EPERM,
				     "network namespace %s is the host's; refusing to run a sandbox in it",
				     path);
	*fd_out = steal_fd(&fd);
	return 0;
}

int gv_netns_remove(const char *path, hutch_err_t *err)
{
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return hutch_err_sys(err, errno, "unmount network namespace %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return hutch_err_sys(err, errno, "remove %s", path);
	return 0;
}

typedef struct lo_job {
	int netns_fd;
	const char *const *addrs;
	size_t n;
	int error;
	const char *what;
} lo_job_t;

static void *lo_thread(void *arg)
{
	lo_job_t *job = arg;
	if (setns(job->netns_fd, CLONE_NEWNET) < 0) {
		job->error = errno;
		job->what = "setns";
		return NULL;
	}
	for (size_t i = 0; i < job->n; i++) {
		int r = nl_addr_add4(1, job->addrs[i], 32);
		if (r < 0) {
			job->error = -r;
			job->what = job->addrs[i];
			return NULL;
		}
	}
	return NULL;
}

int gv_netns_add_loopback(int netns_fd, const char *const *addrs, size_t n, hutch_err_t *err)
{
	if (!n)
		return 0;
	/* A thread of its own enters the namespace and ends there. */
	lo_job_t job = {.netns_fd = netns_fd, .addrs = addrs, .n = n};
	pthread_t t;
	int r = pthread_create(&t, NULL, lo_thread, &job);
	if (r != 0)
		return hutch_err_sys(err, r, "loopback addresses: thread");
	pthread_join(t, NULL);
	if (job.error)
		return hutch_err_sys(err, job.error, "loopback address %s", job.what);
	return 0;
}
