/*
 * checkpoint.c: saving a running sandbox to a directory.
 *
 * `runsc checkpoint` writes the sandbox's memory and kernel state
 * (checkpoint.img) and stops it. The root file system is not in that image:
 * with --overlay2=none the sandbox's writes live in the upper dir on the
 * host, which is copied next to the image (rootfs-upper/), with the list of
 * image layers it sits on (hutch-layers). Restore (sandbox.c) rebuilds the
 * root from the same layers and that copy, then runs `runsc restore`.
 *
 * gVisor cannot checkpoint host networking ("checkpoint not supported when
 * using hostinet"), so sandboxes in a namespace from the network chain
 * (--network=host here) are refused up front; sandboxes without one run
 * with --network=none and can be checkpointed.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

int gv_sandbox_checkpoint(void *instance, const char *id, const char *image_dir,
			  hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	int r = gv_validate_id(id, err);
	if (r < 0)
		return r;
	if (!rt->probe.has_checkpoint)
		return hutch_err_set(err, ENOTSUP, "runsc %s has no checkpoint/restore",
				     rt->probe.version);
	if (!image_dir || image_dir[0] != '/')
		return hutch_err_set(err, EINVAL, "checkpoint: image dir must be an absolute path");
	gv_proc_t sentry;
	if (gv_sentry_load(rt, id, &sentry) < 0 || !gv_proc_alive(&sentry))
		return hutch_err_set(err, ENOENT, "checkpoint: sandbox %s is not running", id);
	gv_argv_t a = {0};
	gv_sandbox_cmd(rt, id, &a);
	for (size_t i = 0; i < a.n; i++) {
		if (strcmp(a.v[i], "--network=host") == 0) {
			gv_argv_free(&a);
			return hutch_err_set(err, ENOTSUP,
					     "checkpoint %s: gVisor cannot checkpoint a sandbox with host networking (--network=host); only sandboxes without a network namespace from the chain (--network=none) or with netstack can",
					     id);
		}
	}
	if (mkdir(image_dir, 0700) < 0 && errno != EEXIST) {
		gv_argv_free(&a);
		return hutch_err_sys(err, errno, "checkpoint: mkdir %s", image_dir);
	}

	gv_argv_add(&a, "checkpoint");
	gv_argv_addf(&a, "--image-path=%s", image_dir);
	gv_argv_add_runsc_id(&a, id);
	gv_run_t run = GV_RUN_INIT;
	run.capture_stderr = true;
	run.timeout_ms = 300000;
	_cleanup_free_ char *log = gv_sb_path(rt, id, "runsc.log");
	run.log_path = log;
	r = gv_runsc_run(rt, a.v, &run, "runsc checkpoint", err);
	gv_argv_free(&a);
	if (r < 0)
		return hutch_err_prefix(err, "checkpoint %s", id);
	/* runsc stops the sandbox after a checkpoint; its writable layer is
	 * now still and is saved next to the memory image. */
	gv_proc_wait(&sentry, 10000);
	_cleanup_free_ char *upper = gv_sb_path(rt, id, "scratch/upper");
	_cleanup_free_ char *dst = xasprintf("%s/rootfs-upper", image_dir);
	hutch_err_t e = {0};
	gv_remove_tree(dst, &e);
	if (mkdir(dst, 0755) < 0)
		return hutch_err_sys(err, errno, "checkpoint: mkdir %s", dst);
	if ((r = gv_copy_tree(rt, upper, dst, err)) < 0)
		return hutch_err_prefix(err, "checkpoint %s: writable layer", id);
	_cleanup_free_ char *layers_src = gv_sb_path(rt, id, "layers");
	_cleanup_free_ char *layers = NULL;
	if ((r = gv_read_file(layers_src, &layers)) < 0)
		return hutch_err_sys(err, r, "checkpoint: read %s", layers_src);
	_cleanup_free_ char *layers_dst = xasprintf("%s/hutch-layers", image_dir);
	return gv_write_file(layers_dst, layers, err);
}
