/*
 * hutch-agent: the process hutchd keeps inside every sandbox.
 *
 *   hutch-agent init      the sandbox's init (pid 1): serves hutchd on its
 *                         stdin/stdout, reaps orphans, and keeps the sandbox
 *                         alive when hutchd goes away (it waits for the next
 *                         session instead).
 *   hutch-agent session   the same service, started later through the
 *                         runtime's exec (after a daemon restart); exits at
 *                         EOF.
 *
 * It execs processes with pipes or a terminal, streams their output under
 * per-stream credit (agent_proto.h), delivers stdin, signals and window
 * sizes, and reads and writes files. It is a static binary with no
 * dependencies, so it runs in any image. One thread, one poll() loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent_meta.h"
#include "agent_port.h"
#include "agent_proto.h"
#include "clock_ms.h"

/* How long after a process exits its pipes may stay open (held by a
 * background child) before the exit is reported anyway. */
#define LINGER_MS 250
#define MAX_ARGS 4096
#define MAX_STREAMS 4096
#define OUT_HIGH_WATER (8 * 1024 * 1024)

typedef enum stream_kind {
	STREAM_EXEC = 1,
	STREAM_GET,
	STREAM_PUT,
} stream_kind_t;

typedef struct get_entry {
	char *path;  /* absolute, in the sandbox */
	char *rel;   /* as reported */
} get_entry_t;

typedef struct stream {
	uint32_t id;
	stream_kind_t kind;
	struct stream *next;
	/* exec */
	pid_t pid;
	bool exited;
	int wstatus;
	int64_t linger_deadline;
	bool tty;
	int in_fd, out_fd, err_fd;
	agent_buf_t stdin_buf;
	bool stdin_eof;
	int64_t credit;
	uint32_t stdin_consumed; /* written to the child since the last grant */
	/* get */
	get_entry_t *entries;
	size_t n_entries, next_entry;
	int file_fd; /* open file being sent (get) or written (put) */
	bool in_file;
	/* put */
	char put_path[PATH_MAX];
	uint32_t put_mode;
} stream_t;

static bool g_init_mode;
static bool g_connected = true;
static stream_t *g_streams;
static size_t g_n_streams;
static agent_buf_t g_in;
agent_buf_t g_out; /* shared with agent_meta.c */
static int g_sigfd = -1;
static bool g_terminating;

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* ---- sending ---- */

static void send_simple(uint8_t type, uint32_t stream)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, type, stream);
	agent_frame_end(&fb);
}

static void send_u32(uint8_t type, uint32_t stream, uint8_t tag, uint32_t v)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, type, stream);
	agent_frame_u32(&fb, tag, v);
	agent_frame_end(&fb);
}

static void send_error(uint32_t stream, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void send_error(uint32_t stream, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, AGENT_ERROR, stream);
	agent_frame_u32(&fb, AGENT_F_ERRNO, (uint32_t)err);
	agent_frame_str(&fb, AGENT_F_MESSAGE, msg);
	agent_frame_end(&fb);
}

static void send_data(uint8_t type, uint32_t stream, const void *data, size_t n)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, type, stream);
	agent_frame_raw(&fb, data, n);
	agent_frame_end(&fb);
}

/* ---- streams ---- */

static stream_t *stream_find(uint32_t id)
{
	for (stream_t *s = g_streams; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static stream_t *stream_new(uint32_t id, stream_kind_t kind)
{
	if (g_n_streams >= MAX_STREAMS)
		return NULL;
	stream_t *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->id = id;
	s->kind = kind;
	s->in_fd = s->out_fd = s->err_fd = s->file_fd = -1;
	s->credit = AGENT_INITIAL_OUTPUT_CREDIT;
	s->next = g_streams;
	g_streams = s;
	g_n_streams++;
	return s;
}

static void stream_free(stream_t *s)
{
	stream_t **pp = &g_streams;
	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (*pp)
		*pp = s->next;
	close_fd(&s->in_fd);
	close_fd(&s->out_fd);
	close_fd(&s->err_fd);
	close_fd(&s->file_fd);
	agent_buf_free(&s->stdin_buf);
	for (size_t i = 0; i < s->n_entries; i++) {
		free(s->entries[i].path);
		free(s->entries[i].rel);
	}
	free(s->entries);
	free(s);
	g_n_streams--;
}

/* ---- exec ---- */

typedef struct exec_req {
	char *argv[MAX_ARGS + 1];
	int argc;
	char *envp[MAX_ARGS + 1];
	int envc;
	char cwd[PATH_MAX];
	char user[256];
	bool tty, want_stdin;
	uint32_t rows, cols;
} exec_req_t;

static void exec_req_free(exec_req_t *r)
{
	for (int i = 0; i < r->argc; i++)
		free(r->argv[i]);
	for (int i = 0; i < r->envc; i++)
		free(r->envp[i]);
}

static char *field_dup(const agent_field_t *f)
{
	if (memchr(f->data, '\0', f->len))
		return NULL;
	char *s = malloc((size_t)f->len + 1);
	if (!s)
		return NULL;
	memcpy(s, f->data, f->len);
	s[f->len] = '\0';
	return s;
}

/* "uid[:gid]" or "name[:group]", resolved against the image's files. */
static int resolve_user(const char *spec, uid_t *uid, gid_t *gid, char *home,
			size_t home_cap, char *errmsg, size_t cap)
{
	char user[256], group[256] = "";
	snprintf(user, sizeof user, "%s", spec);
	char *colon = strchr(user, ':');
	if (colon) {
		*colon = '\0';
		snprintf(group, sizeof group, "%s", colon + 1);
	}
	char *end;
	bool found = false;
	long v = strtol(user, &end, 10);
	*gid = 0;
	if (*user && !*end && v >= 0) {
		*uid = (uid_t)v;
		*gid = (gid_t)v;
		found = true;
	}
	/* /etc/passwd: name:x:uid:gid:gecos:home:shell */
	FILE *f = fopen("/etc/passwd", "re");
	char line[1024];
	while (f && fgets(line, sizeof line, f)) {
		char *fields[7] = {0};
		int n = 0;
		char *p = line;
		while (n < 7 && p) {
			fields[n++] = p;
			p = strchr(p, ':');
			if (p)
				*p++ = '\0';
		}
		if (n < 6)
			continue;
		bool match = found ? (uid_t)strtol(fields[2], NULL, 10) == *uid
				   : strcmp(fields[0], user) == 0;
		if (match) {
			*uid = (uid_t)strtol(fields[2], NULL, 10);
			*gid = (gid_t)strtol(fields[3], NULL, 10);
			snprintf(home, home_cap, "%s", fields[5]);
			found = true;
			break;
		}
	}
	if (f)
		fclose(f);
	if (!found) {
		snprintf(errmsg, cap, "user `%s` not found in /etc/passwd", user);
		return -ENOENT;
	}
	if (group[0]) {
		v = strtol(group, &end, 10);
		if (!*end && v >= 0) {
			*gid = (gid_t)v;
		} else {
			bool gfound = false;
			f = fopen("/etc/group", "re");
			while (f && fgets(line, sizeof line, f)) {
				char *c1 = strchr(line, ':');
				if (!c1)
					continue;
				*c1 = '\0';
				char *c2 = strchr(c1 + 1, ':');
				if (!c2)
					continue;
				if (strcmp(line, group) == 0) {
					*gid = (gid_t)strtol(c2 + 1, NULL, 10);
					gfound = true;
					break;
				}
			}
			if (f)
				fclose(f);
			if (!gfound) {
				snprintf(errmsg, cap, "group `%s` not found in /etc/group", group);
				return -ENOENT;
			}
		}
	}
	return 0;
}

static bool env_has(char *const *envp, int envc, const char *key)
{
	size_t kl = strlen(key);
	for (int i = 0; i < envc; i++)
		if (strncmp(envp[i], key, kl) == 0 && envp[i][kl] == '=')
			return true;
	return false;
}

/* What the child needs; it shares our memory (CLONE_VM), so it reports a
 * failure by writing child_errno before it exits. */
typedef struct child_args {
	exec_req_t *r;
	const char *path; /* resolved before the clone: no allocation in the child */
	int in, out, errfd;
	const char *slave;
	uid_t uid;
	gid_t gid;
	bool set_user;
	volatile int child_errno;
} child_args_t;

static int exec_child(void *arg)
{
	child_args_t *a = arg;
	exec_req_t *r = a->r;
	int in = a->in, out = a->out, errfd = a->errfd;
	/* Syscalls are dear under gVisor (each one a trip through the
	 * sentry): undo only what the agent changed. It blocks the signals
	 * it reads through signalfd and ignores SIGPIPE; everything else is
	 * at its default already. */
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL);
	setsid();
	if (a->slave) {
		int fd = open(a->slave, O_RDWR);
		if (fd < 0)
			goto fail;
		ioctl(fd, TIOCSCTTY, 0);
		in = out = errfd = fd;
	}
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
		goto fail;
	if (a->slave && in > 2)
		close(in); /* the terminal lives on as 0-2 */
	if (a->set_user) {
		if (setgroups(0, NULL) < 0 && errno != EPERM)
			goto fail;
		if (setgid(a->gid) < 0 || setuid(a->uid) < 0)
			goto fail;
	}
	if (r->cwd[0] && chdir(r->cwd) < 0)
		goto fail;
	/* Every fd of the agent's is close-on-exec, so nothing but 0-2
	 * reaches the process (without a close() per possible fd, which
	 * would cost a millisecond or more under gVisor). */
	execve(a->path, r->argv, r->envp);
fail:
	a->child_errno = errno ? errno : EIO;
	_exit(127);
}

/* argv[0] looked up in the process's PATH, as execvp would. */
static int resolve_command(exec_req_t *r, char *out, size_t cap)
{
	const char *name = r->argv[0];
	if (strchr(name, '/')) {
		snprintf(out, cap, "%s", name);
		return 0;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (int i = 0; i < r->envc; i++)
		if (strncmp(r->envp[i], "PATH=", 5) == 0)
			path = r->envp[i] + 5;
	int err = ENOENT;
	for (const char *p = path;; p++) {
		const char *end = strchr(p, ':');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (snprintf(out, cap, "%.*s%s%s", (int)n, p, n ? "/" : "", name) < (int)cap) {
			struct stat st;
			if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
				if (access(out, X_OK) == 0)
					return 0;
				err = EACCES;
			}
		}
		if (!end)
			break;
		p = end;
	}
	return -err;
}

/* The exec request's fields into r; false on a malformed field. Unknown
 * fields are skipped: they are for newer agents. */
static bool exec_req_parse(const agent_frame_t *f, exec_req_t *r)
{
	agent_field_iter_t it;
	agent_field_t fld;
	bool bad = false;
	agent_fields_begin(&it, f);
	while (!bad && agent_fields_next(&it, &fld)) {
		uint32_t v;
		switch (fld.tag) {
		case AGENT_F_ARG:
			if (r->argc >= MAX_ARGS || !(r->argv[r->argc] = field_dup(&fld)))
				bad = true;
			else
				r->argc++;
			break;
		case AGENT_F_ENV:
			if (r->envc >= MAX_ARGS || !(r->envp[r->envc] = field_dup(&fld)))
				bad = true;
			else
				r->envc++;
			break;
		case AGENT_F_CWD:
			bad = !agent_field_str(&fld, r->cwd, sizeof r->cwd);
			break;
		case AGENT_F_USER:
			bad = !agent_field_str(&fld, r->user, sizeof r->user);
			break;
		case AGENT_F_TTY:
			bad = !agent_field_u32(&fld, &v);
			r->tty = v != 0;
			break;
		case AGENT_F_STDIN:
			bad = !agent_field_u32(&fld, &v);
			r->want_stdin = v != 0;
			break;
		case AGENT_F_ROWS:
			bad = !agent_field_u32(&fld, &r->rows);
			break;
		case AGENT_F_COLS:
			bad = !agent_field_u32(&fld, &r->cols);
			break;
		default:
			break;
		}
	}
	return !bad && !it.malformed;
}

/* Resolves r->user into ca's uid/gid and gives the process the user's HOME
 * unless the request sets one. <0 (-errno) with msg on failure. */
static int exec_req_user(exec_req_t *r, child_args_t *ca, char *msg, size_t cap)
{
	if (!r->user[0])
		return 0;
	char home[PATH_MAX] = "";
	int e = resolve_user(r->user, &ca->uid, &ca->gid, home, sizeof home, msg, cap);
	if (e < 0)
		return e;
	ca->set_user = true;
	if (home[0] && !env_has(r->envp, r->envc, "HOME") && r->envc < MAX_ARGS) {
		size_t n = strlen(home) + 6;
		r->envp[r->envc] = malloc(n);
		if (r->envp[r->envc])
			snprintf(r->envp[r->envc++], n, "HOME=%s", home);
	}
	return 0;
}

/* The process's standard streams: a pty (master kept here) or three
 * pipes (stdin from /dev/null unless the request wants one). */
typedef struct exec_stdio {
	int in[2], out[2], er[2];
	int master;
	char slave[128];
} exec_stdio_t;

static void exec_stdio_close(exec_stdio_t *io)
{
	for (int i = 0; i < 2; i++) {
		close_fd(&io->in[i]);
		close_fd(&io->out[i]);
		close_fd(&io->er[i]);
	}
	close_fd(&io->master);
}

static int exec_stdio_open(const exec_req_t *r, exec_stdio_t *io)
{
	if (r->tty) {
		io->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (io->master < 0 || grantpt(io->master) < 0 || unlockpt(io->master) < 0 ||
		    ptsname_r(io->master, io->slave, sizeof io->slave) != 0)
			return -(errno ? errno : EIO);
		struct winsize ws = {.ws_row = (unsigned short)(r->rows ? r->rows : 24),
				     .ws_col = (unsigned short)(r->cols ? r->cols : 80)};
		ioctl(io->master, TIOCSWINSZ, &ws);
		return 0;
	}
	if (r->want_stdin) {
		if (pipe2(io->in, O_CLOEXEC) < 0)
			return -errno;
	} else {
		io->in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (pipe2(io->out, O_CLOEXEC) < 0 || pipe2(io->er, O_CLOEXEC) < 0)
		return -errno;
	return 0;
}

/* Starts the process; its pid, or -errno. */
static pid_t exec_spawn(exec_req_t *r, child_args_t *ca, exec_stdio_t *io)
{
	char path[PATH_MAX];
	int rc = resolve_command(r, path, sizeof path);
	if (rc < 0)
		return rc;
	ca->r = r;
	ca->path = path;
	ca->in = io->in[0];
	ca->out = io->out[1];
	ca->errfd = io->er[1];
	ca->slave = r->tty ? io->slave : NULL;
	/* clone(CLONE_VM | CLONE_VFORK): no copy of the agent's address space
	 * for a child that execs at once; under gVisor that halves the cost
	 * of starting a process. We resume when it has exec'ed or failed. */
	size_t stack_size = 64 * 1024;
	char *stack = malloc(stack_size);
	if (!stack)
		return -ENOMEM;
	pid_t pid = clone(exec_child, stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, ca);
	int e = errno;
	free(stack);
	if (pid < 0)
		return -e;
	if (ca->child_errno) {
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		return -ca->child_errno;
	}
	return pid;
}

/* The stream takes the parent's ends of the process's standard streams. */
static void exec_stream_adopt(stream_t *s, exec_stdio_t *io)
{
	if (s->tty) {
		s->out_fd = io->master;
		s->in_fd = fcntl(io->master, F_DUPFD_CLOEXEC, 0);
		io->master = -1;
	} else {
		s->in_fd = io->in[1];
		s->out_fd = io->out[0];
		s->err_fd = io->er[0];
		io->in[1] = io->out[0] = io->er[0] = -1;
	}
	if (s->in_fd >= 0)
		set_nonblock(s->in_fd);
	set_nonblock(s->out_fd);
	if (s->err_fd >= 0)
		set_nonblock(s->err_fd);
}

static void exec_start(uint32_t id, const agent_frame_t *f)
{
	if (stream_find(id)) {
		send_error(id, EEXIST, "stream %u already in use", id);
		return;
	}
	exec_req_t *r = calloc(1, sizeof *r);
	if (!r) {
		send_error(id, ENOMEM, "out of memory");
		return;
	}
	exec_stdio_t io = {{-1, -1}, {-1, -1}, {-1, -1}, -1, ""};
	child_args_t ca = {0};
	char msg[512];
	if (!exec_req_parse(f, r) || r->argc == 0) {
		send_error(id, EINVAL, r->argc == 0 ? "exec: empty argv" : "exec: malformed request");
		goto out;
	}
	int e = exec_req_user(r, &ca, msg, sizeof msg);
	if (e < 0) {
		send_error(id, -e, "exec: %s", msg);
		goto out;
	}
	e = exec_stdio_open(r, &io);
	pid_t pid = e < 0 ? e : exec_spawn(r, &ca, &io);
	stream_t *s = NULL;
	if (pid >= 0 && !(s = stream_new(id, STREAM_EXEC))) {
		kill(pid, SIGKILL);
		pid = -EMFILE;
	}
	if (pid < 0) {
		send_error(id, (int)-pid, "exec `%s`: %s", r->argv[0], strerror((int)-pid));
		goto out;
	}
	s->pid = pid;
	s->tty = r->tty;
	exec_stream_adopt(s, &io);
	send_u32(AGENT_STARTED, id, AGENT_F_PID, (uint32_t)pid);
out:
	exec_stdio_close(&io);
	exec_req_free(r);
	free(r);
}

static void exec_report_exit(stream_t *s)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, AGENT_EXIT, s->id);
	if (WIFSIGNALED(s->wstatus)) {
		agent_frame_u32(&fb, AGENT_F_CODE, (uint32_t)-1);
		agent_frame_u32(&fb, AGENT_F_SIGNUM, (uint32_t)WTERMSIG(s->wstatus));
	} else {
		agent_frame_u32(&fb, AGENT_F_CODE, (uint32_t)WEXITSTATUS(s->wstatus));
		agent_frame_u32(&fb, AGENT_F_SIGNUM, 0);
	}
	agent_frame_end(&fb);
	stream_free(s);
}

/* The process exited: report when its output is drained (or lingers). */
static void exec_maybe_finish(stream_t *s)
{
	if (!s->exited)
		return;
	if (s->out_fd < 0 && s->err_fd < 0) {
		exec_report_exit(s);
		return;
	}
	if (s->linger_deadline == 0)
		s->linger_deadline = mono_ms() + LINGER_MS;
}

/* Reads one chunk of output within credit. */
static void exec_pump_output(stream_t *s, int *fd, uint8_t type)
{
	if (*fd < 0 || s->credit <= 0)
		return;
	uint8_t buf[AGENT_CHUNK];
	size_t want = s->credit < (int64_t)sizeof buf ? (size_t)s->credit : sizeof buf;
	ssize_t n = read(*fd, buf, want);
	if (n > 0) {
		send_data(type, s->id, buf, (size_t)n);
		s->credit -= n;
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* EOF, or EIO from a terminal whose other side closed. */
	close_fd(fd);
	if (s->tty)
		close_fd(&s->in_fd);
}

static void exec_pump_stdin(stream_t *s)
{
	while (s->in_fd >= 0 && agent_buf_pending(&s->stdin_buf) > 0) {
		ssize_t n = write(s->in_fd, s->stdin_buf.data + s->stdin_buf.off,
				  agent_buf_pending(&s->stdin_buf));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* The process closed its stdin: drop what is left. */
			agent_buf_consume(&s->stdin_buf, agent_buf_pending(&s->stdin_buf));
			close_fd(&s->in_fd);
			break;
		}
		agent_buf_consume(&s->stdin_buf, (size_t)n);
		s->stdin_consumed += (uint32_t)n;
	}
	/* Grant what was consumed, in batches. */
	if (s->stdin_consumed >= AGENT_CHUNK ||
	    (s->stdin_consumed > 0 && agent_buf_pending(&s->stdin_buf) == 0)) {
		send_u32(AGENT_STDIN_CREDIT, s->id, AGENT_F_BYTES, s->stdin_consumed);
		s->stdin_consumed = 0;
	}
	if (s->stdin_eof && agent_buf_pending(&s->stdin_buf) == 0 && s->in_fd >= 0) {
		if (s->tty) {
			/* A terminal has no half-close: send its EOF character. */
			char eof = 4;
			struct termios t;
			if (tcgetattr(s->in_fd, &t) == 0)
				eof = (char)t.c_cc[VEOF];
			if (write(s->in_fd, &eof, 1) < 0) {
				/* the reader is gone */
			}
			s->stdin_eof = false;
		} else {
			close_fd(&s->in_fd);
		}
	}
}

static void exec_signal(stream_t *s, int sig)
{
	if (s->exited || s->pid <= 0)
		return;
	/* The process leads its own session and group: signal the group so a
	 * shell's children stop too, then the process itself in case it left
	 * the group. */
	kill(-s->pid, sig);
	kill(s->pid, sig);
}

/* ---- files ---- */

static uint32_t file_type(mode_t m)
{
	if (S_ISREG(m))
		return AGENT_FT_FILE;
	if (S_ISDIR(m))
		return AGENT_FT_DIR;
	if (S_ISLNK(m))
		return AGENT_FT_SYMLINK;
	return AGENT_FT_OTHER;
}

static void send_entry(uint32_t id, const char *rel, const struct stat *st, const char *path)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, AGENT_ENTRY, id);
	agent_frame_str(&fb, AGENT_F_PATH, rel);
	agent_frame_u32(&fb, AGENT_F_TYPE, file_type(st->st_mode));
	agent_frame_u32(&fb, AGENT_F_MODE, (uint32_t)(st->st_mode & 07777));
	agent_frame_i64(&fb, AGENT_F_SIZE, (int64_t)st->st_size);
	agent_frame_i64(&fb, AGENT_F_MTIME, (int64_t)st->st_mtime);
	if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof target - 1);
		if (n >= 0) {
			target[n] = '\0';
			agent_frame_str(&fb, AGENT_F_LINK, target);
		}
	}
	agent_frame_end(&fb);
}

static bool read_path(const agent_frame_t *f, char *path, size_t cap, uint32_t *recursive,
		      uint32_t *type, uint32_t *mode, char *link, size_t link_cap,
		      uint32_t *mkdirs)
{
	agent_field_iter_t it;
	agent_field_t fld;
	bool have = false;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld)) {
		switch (fld.tag) {
		case AGENT_F_PATH:
			if (!agent_field_str(&fld, path, cap))
				return false;
			have = true;
			break;
		case AGENT_F_RECURSIVE:
			if (recursive && !agent_field_u32(&fld, recursive))
				return false;
			break;
		case AGENT_F_TYPE:
			if (type && !agent_field_u32(&fld, type))
				return false;
			break;
		case AGENT_F_MODE:
			if (mode && !agent_field_u32(&fld, mode))
				return false;
			break;
		case AGENT_F_LINK:
			if (link && !agent_field_str(&fld, link, link_cap))
				return false;
			break;
		case AGENT_F_MKDIRS:
			if (mkdirs && !agent_field_u32(&fld, mkdirs))
				return false;
			break;
		default:
			break;
		}
	}
	return have && !it.malformed && path[0] == '/';
}

static void file_stat(uint32_t id, const agent_frame_t *f)
{
	char path[PATH_MAX];
	if (!read_path(f, path, sizeof path, NULL, NULL, NULL, NULL, 0, NULL)) {
		send_error(id, EINVAL, "stat: need an absolute path");
		return;
	}
	struct stat st;
	if (lstat(path, &st) < 0) {
		send_error(id, errno, "stat %s: %s", path, strerror(errno));
		return;
	}
	send_entry(id, path, &st, path);
	send_simple(AGENT_DONE, id);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void file_list(uint32_t id, const agent_frame_t *f)
{
	char path[PATH_MAX];
	if (!read_path(f, path, sizeof path, NULL, NULL, NULL, NULL, 0, NULL)) {
		send_error(id, EINVAL, "list: need an absolute path");
		return;
	}
	DIR *d = opendir(path);
	if (!d) {
		send_error(id, errno, "list %s: %s", path, strerror(errno));
		return;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof *names);
			if (!nn)
				break;
			names = nn;
		}
		names[n] = strdup(e->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		char full[PATH_MAX];
		struct stat st;
		if (snprintf(full, sizeof full, "%s/%s", strcmp(path, "/") ? path : "", names[i]) <
			    (int)sizeof full &&
		    lstat(full, &st) == 0)
			send_entry(id, names[i], &st, full);
		free(names[i]);
	}
	free(names);
	send_simple(AGENT_DONE, id);
}

static int remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (!d)
			return -errno;
		struct dirent *e;
		int r = 0;
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char child[PATH_MAX];
			if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child) {
				r = -ENAMETOOLONG;
				break;
			}
			if ((r = remove_tree(child)) < 0)
				break;
		}
		closedir(d);
		if (r < 0)
			return r;
		return rmdir(path) < 0 ? -errno : 0;
	}
	return unlink(path) < 0 ? -errno : 0;
}

static void file_remove(uint32_t id, const agent_frame_t *f)
{
	char path[PATH_MAX];
	uint32_t recursive = 0;
	if (!read_path(f, path, sizeof path, &recursive, NULL, NULL, NULL, 0, NULL)) {
		send_error(id, EINVAL, "remove: need an absolute path");
		return;
	}
	if (!strcmp(path, "/")) {
		send_error(id, EPERM, "remove: refusing to remove /");
		return;
	}
	struct stat st;
	int r;
	if (lstat(path, &st) < 0)
		r = -errno;
	else if (S_ISDIR(st.st_mode))
		r = recursive ? remove_tree(path) : (rmdir(path) < 0 ? -errno : 0);
	else
		r = unlink(path) < 0 ? -errno : 0;
	if (r < 0)
		send_error(id, -r, "remove %s: %s", path, strerror(-r));
	else
		send_simple(AGENT_DONE, id);
}

/* Collects path (and, if a directory, everything under it) for a get. */
static int collect(stream_t *s, const char *path, const char *rel, int depth)
{
	if (depth > 256)
		return -ELOOP;
	get_entry_t *ne = realloc(s->entries, (s->n_entries + 1) * sizeof *ne);
	if (!ne)
		return -ENOMEM;
	s->entries = ne;
	s->entries[s->n_entries].path = strdup(path);
	s->entries[s->n_entries].rel = strdup(rel);
	if (!s->entries[s->n_entries].path || !s->entries[s->n_entries].rel)
		return -ENOMEM;
	s->n_entries++;
	struct stat st;
	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return 0;
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof *names);
			if (!nn) {
				r = -ENOMEM;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(e->d_name))) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (r == 0)
		qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (r == 0) {
			char cp[PATH_MAX], cr[PATH_MAX];
			if (snprintf(cp, sizeof cp, "%s/%s", strcmp(path, "/") ? path : "", names[i]) >= (int)sizeof cp ||
			    snprintf(cr, sizeof cr, "%s/%s", rel, names[i]) >= (int)sizeof cr)
				r = -ENAMETOOLONG;
			else
				r = collect(s, cp, cr, depth + 1);
		}
		free(names[i]);
	}
	free(names);
	return r;
}

static void file_get(uint32_t id, const agent_frame_t *f)
{
	char path[PATH_MAX];
	uint32_t recursive = 0;
	if (stream_find(id)) {
		send_error(id, EEXIST, "stream %u already in use", id);
		return;
	}
	if (!read_path(f, path, sizeof path, &recursive, NULL, NULL, NULL, 0, NULL)) {
		send_error(id, EINVAL, "get: need an absolute path");
		return;
	}
	struct stat st;
	if (lstat(path, &st) < 0) {
		send_error(id, errno, "get %s: %s", path, strerror(errno));
		return;
	}
	stream_t *s = stream_new(id, STREAM_GET);
	if (!s) {
		send_error(id, EMFILE, "too many streams");
		return;
	}
	const char *base = strrchr(path, '/');
	base = base && base[1] ? base + 1 : (strcmp(path, "/") ? path : ".");
	int r;
	if (S_ISDIR(st.st_mode) && !recursive) {
		send_error(id, EISDIR, "get %s: is a directory", path);
		stream_free(s);
		return;
	}
	r = collect(s, path, base, 0);
	if (r < 0) {
		send_error(id, -r, "get %s: %s", path, strerror(-r));
		stream_free(s);
	}
}

/* Sends the next piece of a get: an entry header, or file data within
 * credit. Returns GET_IDLE (waiting for credit), GET_MORE, or GET_GONE when
 * the stream finished and was freed. */
enum { GET_IDLE, GET_MORE, GET_GONE };
static int get_pump(stream_t *s)
{
	if (s->in_file) {
		if (s->credit <= 0)
			return GET_IDLE;
		uint8_t buf[AGENT_CHUNK];
		size_t want = s->credit < (int64_t)sizeof buf ? (size_t)s->credit : sizeof buf;
		ssize_t n = read(s->file_fd, buf, want);
		if (n < 0 && errno == EINTR)
			return GET_MORE;
		if (n > 0) {
			send_data(AGENT_DATA, s->id, buf, (size_t)n);
			s->credit -= n;
			return GET_MORE;
		}
		close_fd(&s->file_fd);
		s->in_file = false;
		send_simple(AGENT_DATA_END, s->id);
		return GET_MORE;
	}
	if (s->next_entry >= s->n_entries) {
		send_simple(AGENT_DONE, s->id);
		stream_free(s);
		return GET_GONE;
	}
	get_entry_t *e = &s->entries[s->next_entry++];
	struct stat st;
	if (lstat(e->path, &st) < 0)
		return GET_MORE; /* vanished meanwhile: skip it */
	send_entry(s->id, e->rel, &st, e->path);
	if (S_ISREG(st.st_mode)) {
		s->file_fd = open(e->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (s->file_fd < 0) {
			send_error(s->id, errno, "read %s: %s", e->path, strerror(errno));
			stream_free(s);
			return GET_GONE;
		}
		s->in_file = true;
	}
	return GET_MORE;
}

static int mkdirs_for(const char *path)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

static void file_put(uint32_t id, const agent_frame_t *f)
{
	stream_t *s = stream_find(id);
	if (s && (s->kind != STREAM_PUT || s->in_file)) {
		send_error(id, EEXIST, "stream %u already in use", id);
		return;
	}
	char path[PATH_MAX], link[PATH_MAX] = "";
	uint32_t type = AGENT_FT_FILE, mode = 0644, mkdirs = 0;
	if (!read_path(f, path, sizeof path, NULL, &type, &mode, link, sizeof link, &mkdirs)) {
		send_error(id, EINVAL, "put: need an absolute path");
		if (s)
			stream_free(s);
		return;
	}
	if (!s && !(s = stream_new(id, STREAM_PUT))) {
		send_error(id, EMFILE, "too many streams");
		return;
	}
	int r = 0;
	if (mkdirs)
		r = mkdirs_for(path);
	if (r == 0) {
		switch (type) {
		case AGENT_FT_DIR:
			if (mkdir(path, mode & 07777) < 0 && errno != EEXIST)
				r = -errno;
			else if (chmod(path, mode & 07777) < 0)
				r = -errno;
			break;
		case AGENT_FT_SYMLINK:
			unlink(path);
			if (symlink(link, path) < 0)
				r = -errno;
			break;
		case AGENT_FT_FILE:
			s->file_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
					  mode & 07777);
			if (s->file_fd < 0)
				r = -errno;
			else
				s->in_file = true;
			break;
		default:
			r = -EINVAL;
		}
	}
	snprintf(s->put_path, sizeof s->put_path, "%s", path);
	s->put_mode = mode & 07777;
	if (r < 0) {
		send_error(id, -r, "put %s: %s", path, strerror(-r));
		stream_free(s);
	} else if (!s->in_file) {
		send_simple(AGENT_DONE, id); /* one reply per entry */
	}
}

static void put_data(stream_t *s, const agent_frame_t *f)
{
	const uint8_t *p = f->payload;
	size_t left = f->len;
	while (left > 0) {
		ssize_t n = write(s->file_fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			send_error(s->id, e, "write %s: %s", s->put_path, strerror(e));
			unlink(s->put_path);
			stream_free(s);
			return;
		}
		p += n;
		left -= (size_t)n;
	}
}

static void put_end(stream_t *s)
{
	/* The mode again: the umask may have narrowed it at open. */
	if (fchmod(s->file_fd, s->put_mode) < 0 || close(s->file_fd) < 0) {
		int e = errno;
		s->file_fd = -1;
		send_error(s->id, e, "write %s: %s", s->put_path, strerror(e));
		stream_free(s);
		return;
	}
	s->file_fd = -1;
	s->in_file = false;
	send_simple(AGENT_DONE, s->id);
}

/* ---- dispatch ---- */

static void handle_frame(const agent_frame_t *f)
{
	stream_t *s = f->stream ? stream_find(f->stream) : NULL;
	agent_field_iter_t it;
	agent_field_t fld;
	uint32_t v;

	switch (f->type) {
	case AGENT_HELLO: {
		agent_fb_t fb;
		agent_frame_begin(&fb, &g_out, AGENT_HELLO_ACK, 0);
		agent_frame_u32(&fb, AGENT_F_VERSION, AGENT_PROTO_VERSION);
		agent_frame_u32(&fb, AGENT_F_PID, (uint32_t)getpid());
		agent_frame_end(&fb);
		break;
	}
	case AGENT_PING:
		send_simple(AGENT_PONG, f->stream);
		break;
	case AGENT_EXEC:
		exec_start(f->stream, f);
		break;
	case AGENT_STDIN:
		if (s && s->kind == STREAM_EXEC && s->in_fd >= 0 && !s->stdin_eof)
			agent_buf_append(&s->stdin_buf, f->payload, f->len);
		break;
	case AGENT_STDIN_EOF:
		if (s && s->kind == STREAM_EXEC)
			s->stdin_eof = true;
		break;
	case AGENT_SIGNAL:
		agent_fields_begin(&it, f);
		while (agent_fields_next(&it, &fld))
			if (fld.tag == AGENT_F_SIGNUM && agent_field_u32(&fld, &v) && v > 0 && v < 65 &&
			    s && s->kind == STREAM_EXEC)
				exec_signal(s, (int)v);
		break;
	case AGENT_RESIZE:
		if (s && s->kind == STREAM_EXEC && s->tty && s->out_fd >= 0) {
			uint32_t rows = 0, cols = 0;
			agent_fields_begin(&it, f);
			while (agent_fields_next(&it, &fld)) {
				if (fld.tag == AGENT_F_ROWS)
					agent_field_u32(&fld, &rows);
				else if (fld.tag == AGENT_F_COLS)
					agent_field_u32(&fld, &cols);
			}
			struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
			ioctl(s->out_fd, TIOCSWINSZ, &ws);
		}
		break;
	case AGENT_CREDIT:
		agent_fields_begin(&it, f);
		while (agent_fields_next(&it, &fld))
			if (fld.tag == AGENT_F_BYTES && agent_field_u32(&fld, &v) && s &&
			    s->credit < INT64_MAX / 2)
				s->credit += v;
		break;
	case AGENT_FILE_STAT:
		file_stat(f->stream, f);
		break;
	case AGENT_FILE_LIST:
		file_list(f->stream, f);
		break;
	case AGENT_FILE_REMOVE:
		file_remove(f->stream, f);
		break;
	case AGENT_FILE_GET:
		file_get(f->stream, f);
		break;
	case AGENT_FILE_PUT:
		file_put(f->stream, f);
		break;
	case AGENT_DATA:
		if (s && s->kind == STREAM_PUT && s->in_file)
			put_data(s, f);
		break;
	case AGENT_DATA_END:
		if (s && s->kind == STREAM_PUT && s->in_file)
			put_end(s);
		break;
	case AGENT_META_LISTEN:
		meta_listen();
		break;
	case AGENT_META_REPLY:
		if (f->stream & AGENT_META_STREAM_BIT)
			meta_reply(f->stream, f->payload, f->len);
		break;
	case AGENT_PORT_WAIT:
		port_wait_start(f->stream, f);
		break;
	case AGENT_CANCEL:
		if (port_wait_cancel(f->stream))
			break;
		if (s && s->kind != STREAM_EXEC) {
			if (s->kind == STREAM_PUT && s->in_file)
				unlink(s->put_path);
			stream_free(s);
		} else if (s) {
			exec_signal(s, SIGKILL);
		}
		break;
	default:
		break; /* newer hutchd: ignore what we do not know */
	}
}

/* ---- the loop ---- */

static void reap(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (stream_t *s = g_streams; s; s = s->next) {
			if (s->kind == STREAM_EXEC && s->pid == pid) {
				s->exited = true;
				s->wstatus = st;
				break;
			}
		}
	}
}

static void disconnect(void)
{
	/* hutchd went away: processes keep running; nobody is left to stream
	 * to, so their pipes are closed. */
	g_connected = false;
	meta_close_all();
	port_close_all();
	while (g_streams)
		stream_free(g_streams);
	agent_buf_free(&g_in);
	agent_buf_free(&g_out);
}

static void terminate_all(int sig)
{
	g_terminating = true;
	kill(-1, sig);
}

/* What each polled fd is for. */
enum poll_role {
	ROLE_SIGNALS,  /* the signalfd */
	ROLE_FROM_HUTCHD, /* fd 0 */
	ROLE_TO_HUTCHD,   /* fd 1 */
	ROLE_STDOUT,   /* an exec's stdout (or pty) */
	ROLE_STDERR,
	ROLE_STDIN,
	ROLE_META,     /* the metadata relay's own fds */
	ROLE_PORT,     /* port waits' connects (agent_port.c) */
};

typedef struct poll_set {
	struct pollfd *pfds;
	stream_t **owners;
	int *roles;
	size_t cap;
	nfds_t n;
} poll_set_t;

static bool poll_reserve(poll_set_t *ps, size_t need)
{
	if (need <= ps->cap)
		return true;
	ps->cap = need * 2;
	ps->pfds = realloc(ps->pfds, ps->cap * sizeof *ps->pfds);
	ps->owners = realloc(ps->owners, ps->cap * sizeof *ps->owners);
	ps->roles = realloc(ps->roles, ps->cap * sizeof *ps->roles);
	return ps->pfds && ps->owners && ps->roles;
}

static void poll_add(poll_set_t *ps, int fd, short events, stream_t *owner, int role)
{
	ps->pfds[ps->n] = (struct pollfd){.fd = fd, .events = events};
	ps->owners[ps->n] = owner;
	ps->roles[ps->n++] = role;
}

/* The exec streams' fds; lingering exits that are due are reported here,
 * and timeout shrinks to the next linger deadline. */
static void poll_add_streams(poll_set_t *ps, int *timeout)
{
	bool out_full = agent_buf_pending(&g_out) > OUT_HIGH_WATER;
	int64_t now = mono_ms();
	for (stream_t *s = g_streams, *next; s; s = next) {
		next = s->next;
		if (s->kind == STREAM_GET) {
			if (!out_full && (s->credit > 0 || !s->in_file))
				*timeout = 0;
			continue;
		}
		if (s->kind != STREAM_EXEC)
			continue;
		if (s->exited && s->linger_deadline && s->credit <= 0)
			s->linger_deadline = now + LINGER_MS; /* waiting on the reader, not idle */
		if (s->exited && s->linger_deadline && now >= s->linger_deadline) {
			/* A background child holds the pipes: report now. */
			close_fd(&s->out_fd);
			close_fd(&s->err_fd);
			exec_report_exit(s);
			continue;
		}
		if (s->exited && s->linger_deadline) {
			int left = (int)(s->linger_deadline - now);
			if (*timeout < 0 || left < *timeout)
				*timeout = left;
		}
		if (s->out_fd >= 0 && s->credit > 0 && !out_full)
			poll_add(ps, s->out_fd, POLLIN, s, ROLE_STDOUT);
		if (s->err_fd >= 0 && s->credit > 0 && !out_full)
			poll_add(ps, s->err_fd, POLLIN, s, ROLE_STDERR);
		if (s->in_fd >= 0 && agent_buf_pending(&s->stdin_buf) > 0)
			poll_add(ps, s->in_fd, POLLOUT, s, ROLE_STDIN);
	}
}

static void read_signals(void)
{
	struct signalfd_siginfo si;
	while (read(g_sigfd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			reap();
		else if (g_init_mode)
			terminate_all((int)si.ssi_signo);
	}
}

/* hutchd went away (or spoke garbage): a session agent exits with code,
 * init waits for the next connection. -1: carry on. */
static int hutchd_lost(int code)
{
	if (!g_init_mode)
		return code;
	disconnect();
	return -1;
}

/* Frames from hutchd. -1: carry on; else the exit code. */
static int read_from_hutchd(void)
{
	uint8_t buf[65536];
	ssize_t r = read(0, buf, sizeof buf);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
		return hutchd_lost(0);
	if (r > 0 && agent_buf_append(&g_in, buf, (size_t)r) < 0)
		return 1;
	agent_frame_t f;
	long used;
	while ((used = agent_frame_parse(g_in.data + g_in.off, agent_buf_pending(&g_in), &f)) > 0) {
		handle_frame(&f);
		agent_buf_consume(&g_in, (size_t)used);
	}
	if (used < 0) /* hutchd speaks another protocol: give up on it. */
		return hutchd_lost(1);
	return -1;
}

static int write_to_hutchd(void)
{
	ssize_t w = write(1, g_out.data + g_out.off, agent_buf_pending(&g_out));
	if (w > 0)
		agent_buf_consume(&g_out, (size_t)w);
	else if (w < 0 && errno != EAGAIN && errno != EINTR)
		return hutchd_lost(0);
	return -1;
}

static bool stream_listed(const stream_t *s)
{
	for (stream_t *t = g_streams; t; t = t->next)
		if (t == s)
			return true;
	return false;
}

/* Handles one round's events. -1: carry on; else the exit code. */
static int poll_dispatch(poll_set_t *ps)
{
	for (nfds_t i = 0; i < ps->n; i++) {
		if (!ps->pfds[i].revents || ps->roles[i] == ROLE_META || ps->roles[i] == ROLE_PORT)
			continue;
		stream_t *s = ps->owners[i];
		/* A stream may have been freed by an earlier event in this
		 * round: only touch ones still listed. */
		if (s && !stream_listed(s))
			continue;
		int rc = -1;
		switch (ps->roles[i]) {
		case ROLE_SIGNALS:
			read_signals();
			break;
		case ROLE_FROM_HUTCHD:
			rc = read_from_hutchd();
			break;
		case ROLE_TO_HUTCHD:
			rc = write_to_hutchd();
			break;
		case ROLE_STDOUT:
			exec_pump_output(s, &s->out_fd, AGENT_STDOUT);
			break;
		case ROLE_STDERR:
			exec_pump_output(s, &s->err_fd, AGENT_STDERR);
			break;
		case ROLE_STDIN:
			exec_pump_stdin(s);
			break;
		}
		if (rc >= 0)
			return rc;
	}
	return -1;
}

/* Work that needs no fd: stdin bookkeeping, gets, exits. */
static void streams_work(void)
{
	for (stream_t *s = g_streams, *next; s; s = next) {
		next = s->next;
		if (s->kind == STREAM_EXEC) {
			exec_pump_stdin(s);
			exec_maybe_finish(s);
		} else if (s->kind == STREAM_GET && agent_buf_pending(&g_out) <= OUT_HIGH_WATER) {
			for (int k = 0; k < 16; k++)
				if (get_pump(s) != GET_MORE)
					break;
		}
	}
}

static void agent_setup(void)
{
	if (g_init_mode)
		meta_prepare();
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (g_init_mode) {
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGHUP);
	}
	sigprocmask(SIG_BLOCK, &set, NULL);
	g_sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	set_nonblock(0);
	set_nonblock(1);
	/* Nothing of ours leaks into exec'd processes. */
	fcntl(0, F_SETFD, FD_CLOEXEC);
	fcntl(1, F_SETFD, FD_CLOEXEC);
	fcntl(2, F_SETFD, FD_CLOEXEC);
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "init") && strcmp(argv[1], "session"))) {
		fprintf(stderr, "usage: hutch-agent init|session\n");
		return 2;
	}
	g_init_mode = strcmp(argv[1], "init") == 0;
	agent_setup();
	static poll_set_t ps;
	for (;;) {
		if (!poll_reserve(&ps, 3 + 3 * g_n_streams + meta_max_fds() + port_max_fds()))
			return 1;
		ps.n = 0;
		int timeout = -1;
		poll_add(&ps, g_sigfd, POLLIN, NULL, ROLE_SIGNALS);
		if (g_connected)
			poll_add(&ps, 0, POLLIN, NULL, ROLE_FROM_HUTCHD);
		poll_add_streams(&ps, &timeout);
		size_t meta_first = ps.n;
		size_t meta_n = meta_add_fds(ps.pfds + ps.n, &timeout);
		for (size_t k = 0; k < meta_n; k++)
			ps.owners[ps.n + k] = NULL, ps.roles[ps.n + k] = ROLE_META;
		ps.n += meta_n;
		size_t port_first = ps.n;
		size_t port_n = g_connected ? port_add_fds(ps.pfds + ps.n, &timeout) : 0;
		for (size_t k = 0; k < port_n; k++)
			ps.owners[ps.n + k] = NULL, ps.roles[ps.n + k] = ROLE_PORT;
		ps.n += port_n;
		/* After the streams: finishing one (a lingering exit) queues
		 * output in this very round. */
		if (g_connected && agent_buf_pending(&g_out) > 0)
			poll_add(&ps, 1, POLLOUT, NULL, ROLE_TO_HUTCHD);
		/* Terminating: exit when every child is gone. */
		if (g_terminating && !g_streams && waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			return 0;

		int pr = poll(ps.pfds, ps.n, timeout);
		if (pr < 0 && errno != EINTR)
			return 1;
		if (pr > 0 && meta_n)
			meta_handle_fds(ps.pfds + meta_first, meta_n);
		if (pr > 0 && port_n)
			port_handle_fds(ps.pfds + port_first, port_n);
		int rc = pr > 0 ? poll_dispatch(&ps) : -1;
		if (rc >= 0)
			return rc;
		streams_work();
	}
}
