/*
 * hutch/error.h: the error object shared by the core, plugins and the client
 * library.
 *
 * Every fallible function in hutch returns an int: 0 on success or a negative
 * errno value on failure, and takes a hutch_err_t * as its last argument. On
 * failure the callee fills the object with the (positive) errno and a human
 * message; callers add context on the way up with hutch_err_prefix(), so the
 * user finally reads one line such as
 *
 *     create sandbox sb-12: mount rootfs: overlay: Invalid argument
 *
 * The object is a plain fixed-size struct owned by the caller (usually on the
 * stack), so it crosses the plugin boundary without allocation and can never
 * leak. Everything here is static inline: plugins need no symbol from the
 * daemon to use it.
 */
#ifndef HUTCH_ERROR_H
#define HUTCH_ERROR_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HUTCH_ERR_MESSAGE_MAX 1024

typedef struct hutch_err {
	int code;                            /* positive errno; 0 = no error */
	char message[HUTCH_ERR_MESSAGE_MAX]; /* NUL-terminated, one line */
} hutch_err_t;

#if defined(__GNUC__)
#define HUTCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HUTCH_PRINTF(f, a)
#endif

/* Fills err with code and a formatted message; returns -code, so that
 * `return hutch_err_set(err, EINVAL, "bad %s", x);` is one line. A NULL err
 * is allowed and ignored. */
static inline HUTCH_PRINTF(3, 4) int hutch_err_set(hutch_err_t *err, int code,
						    const char *fmt, ...)
{
	if (code < 0)
		code = -code;
	if (code == 0)
		code = EIO;
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return -code;
}

/* Like hutch_err_set, for a failed system call: appends ": strerror(code)". */
static inline HUTCH_PRINTF(3, 4) int hutch_err_sys(hutch_err_t *err, int code,
						    const char *fmt, ...)
{
	if (code < 0)
		code = -code;
	if (code == 0)
		code = EIO;
	if (err) {
		char what[HUTCH_ERR_MESSAGE_MAX / 2];
		char buf[128];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(what, sizeof what, fmt, ap);
		va_end(ap);
		/* strerror_r: GNU returns a pointer, XSI fills buf. */
#if defined(_GNU_SOURCE) && defined(__GLIBC__)
		const char *s = strerror_r(code, buf, sizeof buf);
#else
		const char *s = strerror_r(code, buf, sizeof buf) == 0 ? buf : "error";
#endif
		snprintf(err->message, sizeof err->message, "%s: %s", what, s);
		err->code = code;
	}
	return -code;
}

/* Prepends "context: " to the message already in err; keeps the code.
 * Returns -err->code so that `return hutch_err_prefix(err, "stop %s", id);`
 * passes a failure up. */
static inline HUTCH_PRINTF(2, 3) int hutch_err_prefix(hutch_err_t *err,
						       const char *fmt, ...)
{
	if (!err)
		return -EIO;
	char ctx[HUTCH_ERR_MESSAGE_MAX];
	char old[HUTCH_ERR_MESSAGE_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof ctx, fmt, ap);
	va_end(ap);
	memcpy(old, err->message, sizeof old);
	old[sizeof old - 1] = '\0';
	snprintf(err->message, sizeof err->message, "%s: %s", ctx, old);
	if (err->code == 0)
		err->code = EIO;
	return -err->code;
}

static inline void hutch_err_clear(hutch_err_t *err)
{
	if (err) {
		err->code = 0;
		err->message[0] = '\0';
	}
}

#ifdef __cplusplus
}
#endif
#endif /* HUTCH_ERROR_H */
