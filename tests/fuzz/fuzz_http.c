/* Fuzzes hutchd's HTTP/1.1 request parser (core/http), which reads what
 * any host client sends to the issuer listener and what a sandbox sends to
 * its metadata endpoint: no crash, no read outside the input, and what it
 * accepts is self-consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_server.h"

static void check_str(const char *s, const char *scratch, size_t n)
{
	if (!s)
		__builtin_trap();
	/* Every string points into the scratch copy and ends inside it. */
	if (s < scratch || s >= scratch + n + 1)
		__builtin_trap();
	(void)strlen(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *scratch = malloc(size + 1);
	http_request_t req;
	int status = 0;
	memset(&req, 0, sizeof req);
	long used = http_parse_request((const char *)data, size, scratch, &req, &status);
	if (used < -1 || used > (long)size)
		__builtin_trap();
	if (used == -1 && status != 400 && status != 413 && status != 431 && status != 405 &&
	    status != 501 && status != 505)
		__builtin_trap();
	if (used > 0) {
		check_str(req.method, scratch, size);
		check_str(req.path, scratch, size);
		if (req.query[0]) /* "" when there is no query */
			check_str(req.query, scratch, size);
		if (req.path[0] != '/')
			__builtin_trap();
		if (req.n_headers > HTTP_MAX_HEADERS || req.body_len > HTTP_MAX_BODY)
			__builtin_trap();
		for (size_t i = 0; i < req.n_headers; i++) {
			check_str(req.headers[i].name, scratch, size);
			check_str(req.headers[i].value, scratch, size);
			for (const char *p = req.headers[i].name; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					__builtin_trap(); /* names are lower-cased */
		}
		if (req.body_len && (req.body < scratch || req.body + req.body_len > scratch + size))
			__builtin_trap();
		char buf[256];
		(void)http_param(req.query, "audience", buf, sizeof buf);
		(void)http_header(&req, "metadata-flavor");
		if (req.body_len) {
			/* A form body is parsed by the same decoder. */
			char *form = strndup(req.body, req.body_len);
			(void)http_param(form, "subject_token", buf, sizeof buf);
			free(form);
		}
	}
	free(scratch);
	return 0;
}
