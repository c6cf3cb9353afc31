#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"

static hutch_log_level_t g_level = HUTCH_LOG_INFO;
static log_format_t g_format = LOG_FORMAT_TEXT;
static int g_fd = 2;
static pthread_mutex_t g_redact_lock = PTHREAD_MUTEX_INITIALIZER;
static char **g_redact; /* NULL-terminated */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(hutch_log_level_t level, log_format_t format, int fd)
{
	g_level = level;
	g_format = format;
	g_fd = fd;
}

hutch_log_level_t log_get_level(void)
{
	return g_level;
}

int log_parse_level(const char *s, hutch_log_level_t *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (hutch_log_level_t)i;
			return 0;
		}
	}
	return -EINVAL;
}

int log_parse_format(const char *s, log_format_t *out)
{
	if (strcmp(s, "text") == 0)
		*out = LOG_FORMAT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return -EINVAL;
	return 0;
}

void log_redact_add(const char *value)
{
	if (!value || strlen(value) < 4)
		return;
	pthread_mutex_lock(&g_redact_lock);
	strv_push(&g_redact, xstrdup(value));
	pthread_mutex_unlock(&g_redact_lock);
}

void log_redact_remove(const char *value)
{
	if (!value)
		return;
	pthread_mutex_lock(&g_redact_lock);
	size_t n = strv_len(g_redact);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(g_redact[i], value) == 0) {
			free(g_redact[i]);
			memmove(&g_redact[i], &g_redact[i + 1],
				(n - i) * sizeof *g_redact);
			break;
		}
	}
	pthread_mutex_unlock(&g_redact_lock);
}

/* Masks registered secret values in place (the text shrinks or grows). */
static void redact(strbuf_t *msg)
{
	pthread_mutex_lock(&g_redact_lock);
	for (char **v = g_redact; v && *v; v++) {
		size_t vl = strlen(*v);
		char *hit;
		while ((hit = strstr(msg->buf, *v)) != NULL) {
			static const char mask[] = "[redacted]";
			strbuf_t out = STRBUF_INIT;
			sb_append_n(&out, msg->buf, (size_t)(hit - msg->buf));
			sb_append(&out, mask);
			sb_append(&out, hit + vl);
			sb_free(msg);
			*msg = out;
		}
	}
	pthread_mutex_unlock(&g_redact_lock);
}

/* One record is one line, with secrets masked. */
static void clean(strbuf_t *msg)
{
	for (char *p = msg->buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (g_redact)
		redact(msg);
}

static void field_text(strbuf_t *line, const log_field_t *f)
{
	sb_printf(line, " %s=", f->key);
	if (!f->str) {
		sb_printf(line, "%.15g", f->num);
		return;
	}
	_cleanup_sb_ strbuf_t v = STRBUF_INIT;
	sb_append(&v, f->str);
	clean(&v);
	if (v.len && !strpbrk(v.buf, " \"\\"))
		sb_append(line, v.buf);
	else
		sb_json_str(line, v.buf);
}

static void field_json(strbuf_t *line, const log_field_t *f)
{
	sb_putc(line, ',');
	sb_json_str(line, f->key);
	sb_putc(line, ':');
	if (!f->str) {
		sb_printf(line, "%.15g", f->num);
		return;
	}
	_cleanup_sb_ strbuf_t v = STRBUF_INIT;
	sb_append(&v, f->str);
	clean(&v);
	sb_json_str(line, v.buf);
}

static void emit(hutch_log_level_t level, const char *source, const char *msg,
		 const log_field_t *fields, size_t n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[64];
	snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	const char *lvl = level <= HUTCH_LOG_DEBUG ? level_names[level] : "debug";

	_cleanup_sb_ strbuf_t line = STRBUF_INIT;
	if (g_format == LOG_FORMAT_JSON) {
		sb_append(&line, "{\"ts\":");
		sb_json_str(&line, when);
		sb_append(&line, ",\"level\":");
		sb_json_str(&line, lvl);
		sb_append(&line, ",\"source\":");
		sb_json_str(&line, source);
		sb_append(&line, ",\"msg\":");
		sb_json_str(&line, msg);
		for (size_t i = 0; i < n; i++)
			field_json(&line, &fields[i]);
		sb_append(&line, "}\n");
	} else {
		sb_printf(&line, "%s %-5s [%s] %s", when, lvl, source, msg);
		for (size_t i = 0; i < n; i++)
			field_text(&line, &fields[i]);
		sb_putc(&line, '\n');
	}
	ssize_t w = write(g_fd, line.buf, line.len);
	(void)w;
}

void log_vwrite(hutch_log_level_t level, const char *source, const char *fmt,
		va_list ap)
{
	if (level > g_level)
		return;
	_cleanup_sb_ strbuf_t msg = STRBUF_INIT;
	sb_vprintf(&msg, fmt, ap);
	if (!msg.buf)
		sb_append(&msg, "");
	clean(&msg);
	emit(level, source, msg.buf, NULL, 0);
}

void log_fields(hutch_log_level_t level, const char *source, const char *msg,
		const log_field_t *fields, size_t n)
{
	if (level > g_level)
		return;
	_cleanup_sb_ strbuf_t m = STRBUF_INIT;
	sb_append(&m, msg);
	clean(&m);
	emit(level, source, m.buf, fields, n);
}

void log_write(hutch_log_level_t level, const char *source, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, source, fmt, ap);
	va_end(ap);
}
