#include "sandbox_identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"

int identity_issue(plugin_t *idp, const sandbox_who_t *who, const char *audience, char **token,
		   int64_t *expires_unix, hutch_err_t *err)
{
	if (!idp)
		return hutch_err_set(err, ENOTSUP, "no identity plugin is loaded");
	hutch_identity_subject_t subj = {
		.size = sizeof subj,
		.tenant = who->tenant,
		.sandbox_id = who->id,
		.sandbox_name = who->name && *who->name ? who->name : NULL,
		.image_digest = who->image_digest && *who->image_digest ? who->image_digest : NULL,
	};
	char *buf = xmalloc(IDENTITY_TOKEN_MAX);
	hutch_identity_token_t out = {.size = sizeof out, .token = buf, .token_cap = IDENTITY_TOKEN_MAX};
	int r = idp->ops.identity.token_issue(idp->instance, &subj,
					      audience && *audience ? audience : NULL, &out, err);
	if (r < 0) {
		free(buf);
		return hutch_err_prefix(err, "%s", idp->name);
	}
	*token = buf;
	*expires_unix = out.expires_unix;
	return 0;
}

int identity_write_file(plugin_t *idp, const char *dir, const sandbox_who_t *who,
			const char *audience, int64_t *expires_unix, hutch_err_t *err)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", dir);
	char *token = NULL;
	int r = identity_issue(idp, who, audience, &token, expires_unix, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *tmp = xasprintf("%s/.token.new", dir);
	_cleanup_free_ char *path = xasprintf("%s/token", dir);
	size_t n = strlen(token);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		r = hutch_err_sys(err, errno, "create %s", tmp);
	} else {
		bool ok = write(fd, token, n) == (ssize_t)n && fsync(fd) == 0;
		int e = errno ? errno : EIO;
		close(fd);
		if (!ok || rename(tmp, path) < 0) {
			r = hutch_err_sys(err, ok ? errno : e, "write %s", path);
			unlink(tmp);
		}
	}
	explicit_bzero(token, n);
	free(token);
	return r;
}

int64_t identity_renew_at_ms(int64_t now_ms, int64_t expires_unix)
{
	int64_t left = expires_unix * 1000 - now_ms;
	if (left < 3000)
		return now_ms + 1000;
	return now_ms + left * 2 / 3;
}
