/* hutch image build FILE.toml: the spec from the file (image_toml.h), the
 * Build call, and its progress: on a terminal, the steps as they end and a
 * bar for the one running, the build's output scrolling above it; anywhere
 * else, one plain line per event. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "image_spec.h"
#include "image_toml.h"
#include "pb_json.h"
#include "strbuf.h"
#include "clock_ms.h"

#define CHUNK (1 << 20)

/* ---- progress ---- */

typedef struct progress {
	FILE *out;
	bool tty;
	bool quiet;          /* no build output, only steps */
	uint32_t total;
	uint32_t finished;   /* steps cached or built */
	uint32_t cur;        /* the step running (0: none) */
	char desc[160];
	const char *state;
	int64_t step_start, build_start;
	bool bar_shown;
	strbuf_t partial;    /* output not yet ended by a newline */
	uint32_t partial_index;
	/* the failed step, for the summary */
	uint32_t failed_index;
	char *failed_desc, *failed_error, *failed_tail;
	int failed_exit;
} progress_t;

static int term_cols(void)
{
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static void bar_clear(progress_t *p)
{
	if (p->tty && p->bar_shown) {
		fputs("\r\033[K", p->out);
		p->bar_shown = false;
	}
}

static void bar_draw(progress_t *p)
{
	if (!p->tty || !p->total)
		return;
	int cols = term_cols();
	int width = 24;
	int filled = (int)((uint64_t)width * p->finished / p->total);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < filled ? '#' : (i == filled && p->cur ? '>' : '.');
	bar[width] = '\0';
	char line[512];
	double secs = (double)(mono_ms() - (p->cur ? p->step_start : p->build_start)) / 1000.0;
	int n = snprintf(line, sizeof line, "[%s] %u/%u %s %s (%.1fs)", bar, p->finished, p->total,
			 p->cur ? p->state : "", p->cur ? p->desc : "", secs);
	if (n >= cols)
		line[cols - 1] = '\0';
	fprintf(p->out, "\r\033[K%s", line);
	fflush(p->out);
	p->bar_shown = true;
}

/* Complete lines of a step's output, each prefixed. */
static void output_lines(progress_t *p, uint32_t index, const uint8_t *data, size_t len)
{
	if (p->quiet)
		return;
	if (p->partial.len && p->partial_index != index) {
		bar_clear(p);
		fprintf(p->out, "  | %s\n", p->partial.buf);
		sb_reset(&p->partial);
	}
	p->partial_index = index;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n') {
			bar_clear(p);
			fprintf(p->out, "  | %s\n", p->partial.buf ? p->partial.buf : "");
			sb_reset(&p->partial);
		} else if (data[i] != '\r') {
			sb_putc(&p->partial, (char)data[i]);
		}
	}
	bar_draw(p);
	fflush(p->out);
}

static void output_flush(progress_t *p)
{
	if (p->partial.len) {
		bar_clear(p);
		fprintf(p->out, "  | %s\n", p->partial.buf);
		sb_reset(&p->partial);
	}
}

static const char *state_word(Hutch__V1__BuildStepState s)
{
	switch (s) {
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_WAITING: return "waiting";
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_RUNNING: return "running";
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED: return "cached";
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT: return "built";
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_FAILED: return "FAILED";
	default: return "?";
	}
}

static void step_event(progress_t *p, const Hutch__V1__BuildStepEvent *s)
{
	p->total = s->total;
	const char *word = state_word(s->state);
	switch (s->state) {
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_WAITING:
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_RUNNING:
		p->cur = s->index;
		p->state = word;
		snprintf(p->desc, sizeof p->desc, "%s", s->description);
		p->step_start = mono_ms();
		if (p->tty) {
			bar_draw(p);
		} else {
			fprintf(p->out, "step %u/%u %s: %s%s\n", s->index, s->total, word, s->description,
				s->state == HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_WAITING
					? " (an identical build is running)" : "");
		}
		break;
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED:
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT: {
		output_flush(p);
		bar_clear(p);
		p->finished = s->index;
		p->cur = 0;
		_cleanup_sb_ strbuf_t extra = STRBUF_INIT;
		if (s->state == HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT)
			sb_printf(&extra, " in %.1fs", (double)s->duration_ms / 1000.0);
		if (s->layer_digest && *s->layer_digest) {
			char size[32];
			sb_printf(&extra, " (layer %.19s, %s)", s->layer_digest,
				  cli_human_size(s->layer_size, size, sizeof size));
		}
		if (p->tty)
			fprintf(p->out, " %u/%u %-6s %s%s\n", s->index, s->total, word, s->description,
				extra.buf ? extra.buf : "");
		else
			fprintf(p->out, "step %u/%u %s%s: %s\n", s->index, s->total, word, extra.buf ? extra.buf : "",
				s->description);
		bar_draw(p);
		break;
	}
	case HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_FAILED:
		output_flush(p);
		bar_clear(p);
		p->cur = 0;
		p->failed_index = s->index;
		free(p->failed_desc);
		free(p->failed_error);
		free(p->failed_tail);
		p->failed_desc = xstrdup(s->description);
		p->failed_error = xstrdup(s->error);
		p->failed_tail = xstrdup(s->output_tail);
		p->failed_exit = s->exit_code;
		fprintf(p->out, "step %u/%u FAILED after %.1fs: %s\n", s->index, s->total,
			(double)s->duration_ms / 1000.0, s->description);
		break;
	default:
		break;
	}
	fflush(p->out);
}

static void progress_free(progress_t *p)
{
	sb_free(&p->partial);
	free(p->failed_desc);
	free(p->failed_error);
	free(p->failed_tail);
}

/* ---- the build ---- */

static int send_file(hc_call_t *call, const char *digest, const char *path, hutch_err_t *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int r = hutch_err_sys(err, errno, "open %s", path);
		if (fd >= 0)
			close(fd);
		return r;
	}
	uint8_t *buf = xmalloc(CHUNK);
	int64_t left = st.st_size;
	int r = 0;
	/* At least one chunk (an empty file is one empty last chunk). A file
	 * that changed since it was hashed fails the daemon's digest check. */
	do {
		size_t want = left > CHUNK ? CHUNK : (size_t)left, have = 0;
		while (have < want) {
			ssize_t n = read(fd, buf + have, want - have);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				r = n < 0 ? hutch_err_sys(err, errno, "read %s", path)
					  : hutch_err_set(err, EIO, "%s changed while it was being sent", path);
				break;
			}
			have += (size_t)n;
		}
		if (r < 0)
			break;
		left -= (int64_t)have;
		Hutch__V1__FileChunk ch = HUTCH__V1__FILE_CHUNK__INIT;
		ch.digest = (char *)digest;
		ch.data.data = buf;
		ch.data.len = have;
		ch.last = left == 0;
		Hutch__V1__BuildImageRequest req = HUTCH__V1__BUILD_IMAGE_REQUEST__INIT;
		req.msg_case = HUTCH__V1__BUILD_IMAGE_REQUEST__MSG_FILE;
		req.file = &ch;
		r = hc_call_send(call, &req.base, err);
	} while (r == 0 && left > 0);
	free(buf);
	close(fd);
	return r;
}

static int send_files(hc_call_t *call, const Hutch__V1__NeedFiles *nf, const image_toml_t *t,
		      hutch_err_t *err)
{
	for (size_t i = 0; i < nf->n_digests; i++) {
		const char *path = image_toml_file_path(t, nf->digests[i]);
		if (!path)
			return hutch_err_set(err, EPROTO, "hutchd asked for %s, which this build does not add",
					     nf->digests[i]);
		int r = send_file(call, nf->digests[i], path, err);
		if (r < 0)
			return r;
	}
	Hutch__V1__BuildImageRequest done = HUTCH__V1__BUILD_IMAGE_REQUEST__INIT;
	done.msg_case = HUTCH__V1__BUILD_IMAGE_REQUEST__MSG_FILES_DONE;
	done.files_done = true;
	return hc_call_send(call, &done.base, err);
}

static int run_build(hutch_client_t *client, const image_toml_t *t, const char *name, bool no_cache,
		     progress_t *p, Hutch__V1__Image **out, hutch_err_t *err)
{
	hc_call_t *call;
	int r = hc_call_start(hutch_client_channel(client), "/hutch.v1.Images/Build", -1, NULL, 0, &call, err);
	if (r < 0)
		return r;
	Hutch__V1__BuildStart start = HUTCH__V1__BUILD_START__INIT;
	start.spec = t->spec;
	start.name = (char *)name;
	start.no_cache = no_cache;
	Hutch__V1__BuildImageRequest req = HUTCH__V1__BUILD_IMAGE_REQUEST__INIT;
	req.msg_case = HUTCH__V1__BUILD_IMAGE_REQUEST__MSG_START;
	req.start = &start;
	r = hc_call_send(call, &req.base, err);
	bool half_closed = false;
	while (r == 0) {
		ProtobufCMessage *m = NULL;
		/* On a terminal, wake up to move the clock on the bar. */
		int k = hc_call_recv(call, &hutch__v1__build_image_event__descriptor, &m, p->tty ? 250 : -1, err);
		if (k == -EAGAIN) {
			bar_draw(p);
			continue;
		}
		if (k <= 0) {
			r = k;
			break;
		}
		Hutch__V1__BuildImageEvent *ev = (Hutch__V1__BuildImageEvent *)m;
		switch (ev->event_case) {
		case HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_NEED_FILES:
			if (ev->need_files->n_digests) {
				bar_clear(p);
				fprintf(p->out, "uploading %zu file%s\n", ev->need_files->n_digests,
					ev->need_files->n_digests == 1 ? "" : "s");
			}
			r = send_files(call, ev->need_files, t, err);
			if (r == 0 && !half_closed) {
				r = hc_call_close_send(call, err);
				half_closed = true;
			}
			break;
		case HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_STEP:
			step_event(p, ev->step);
			break;
		case HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_LOG:
			output_lines(p, ev->log->index, ev->log->data.data, ev->log->data.len);
			break;
		case HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_DONE:
			*out = ev->done;
			ev->done = NULL;
			ev->event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT__NOT_SET;
			break;
		default:
			break;
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	output_flush(p);
	bar_clear(p);
	hc_call_free(call);
	if (r == 0 && !*out)
		r = hutch_err_set(err, EPROTO, "the build ended without an image");
	return r;
}

/* A base from a local OCI layout or docker-archive: imported first, under
 * NAME-base, and built on by digest. */
static int import_base(hutch_client_t *client, image_toml_t *t, const char *name, FILE *out,
		       hutch_err_t *err)
{
	_cleanup_free_ char *base_name = xasprintf("%s-base", name);
	fprintf(out, "importing %s as %s\n", t->import_path, base_name);
	Hutch__V1__Image *img = NULL;
	int r = cli_image_import(client, t->import_path, base_name, NULL, &img, err);
	if (r < 0)
		return hutch_err_prefix(err, "import %s", t->import_path);
	Hutch__V1__ImageBase *b = t->spec->source;
	if (b->image && b->image != protobuf_c_empty_string)
		free(b->image);
	b->image = xstrdup(img->digest);
	protobuf_c_message_free_unpacked(&img->base, NULL);
	return 0;
}

int cmd_image_build(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"no-cache", no_argument, NULL, 'N'},
		{"quiet", no_argument, NULL, 'q'},
		{"progress", required_argument, NULL, 'p'},
		{0},
	};
	const char *usage = "usage: hutch image build FILE.toml [--name NAME] [--no-cache] [--quiet] [--progress auto|plain|tty]";
	const char *name = NULL, *mode = "auto";
	bool no_cache = false, quiet = false;
	int c;
	while ((c = getopt_long(argc, argv, "n:q", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'N': no_cache = true; break;
		case 'q': quiet = true; break;
		case 'p': mode = optarg; break;
		default: return cli_usage_error("%s", usage);
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("%s", usage);
	if (strcmp(mode, "auto") != 0 && strcmp(mode, "plain") != 0 && strcmp(mode, "tty") != 0)
		return cli_usage_error("--progress %s: auto, plain or tty", mode);
	image_toml_t t;
	hutch_err_t err = {0};
	if (image_toml_load(argv[optind], &t, &err) < 0)
		return cli_fail(&err);
	if (!name)
		name = t.name;
	if (!name) {
		image_toml_free(&t);
		return cli_usage_error("%s names no image: add `name = \"...\"` to it or give --name", argv[optind]);
	}
	if (!image_name_valid(name)) {
		image_toml_free(&t);
		return cli_usage_error("image name `%s`: use letters, digits and . _ - / :", name);
	}
	progress_t p = {
		.out = stdout,
		.tty = strcmp(mode, "tty") == 0 || (strcmp(mode, "auto") == 0 && isatty(STDOUT_FILENO)),
		.quiet = quiet,
		.build_start = mono_ms(),
	};
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__Image *img = NULL;
	int r = 0;
	if (t.import_path)
		r = import_base(client, &t, name, p.out, &err);
	if (r == 0 && (r = image_spec_check(t.spec, &err)) < 0)
		hutch_err_prefix(&err, "%s", argv[optind]);
	if (r == 0)
		r = run_build(client, &t, name, no_cache, &p, &img, &err);
	hutch_client_close(client);
	image_toml_free(&t);
	if (r < 0) {
		if (p.failed_index) {
			fprintf(stderr, "hutch: step %u (%s) failed: %s\n", p.failed_index, p.failed_desc,
				p.failed_error && *p.failed_error ? p.failed_error : err.message);
			if (p.failed_exit)
				fprintf(stderr, "hutch: exit code %d\n", p.failed_exit);
			if (quiet && p.failed_tail && *p.failed_tail)
				fprintf(stderr, "hutch: its last output:\n%s%s", p.failed_tail,
					p.failed_tail[strlen(p.failed_tail) - 1] == '\n' ? "" : "\n");
			progress_free(&p);
			return 1;
		}
		progress_free(&p);
		return cli_fail(&err);
	}
	if (cli->json) {
		pb_json_print(stdout, &img->base, 0);
		printf("\n");
	} else {
		char size[32];
		printf("image %s: %s (%zu layers, %s) in %.1fs\n", img->name, img->digest, img->n_layers,
		       cli_human_size(img->size_bytes, size, sizeof size), (double)(mono_ms() - p.build_start) / 1000.0);
	}
	protobuf_c_message_free_unpacked(&img->base, NULL);
	progress_free(&p);
	return 0;
}
