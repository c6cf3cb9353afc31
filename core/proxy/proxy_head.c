/*
 * proxy_head.c: one message head as the parsers hand it over in pieces,
 * with the size limits applied as it grows, and the header rules of
 * RFC 9110 that a proxy owes: which headers are hop-by-hop, how the
 * forwarded ones are written.
 */
#include <strings.h>

#include "proxy_priv.h"

static int head_grow(proxy_head_t *h, size_t extra)
{
	if (h->len + extra + 1 <= h->cap)
		return 0;
	size_t cap = h->cap ? h->cap : 512;
	while (cap < h->len + extra + 1)
		cap *= 2;
	char *b = realloc(h->buf, cap);
	if (!b)
		return -ENOMEM;
	h->buf = b;
	h->cap = cap;
	return 0;
}

static int head_new_header(proxy_head_t *h, const proxy_limits_t *lim)
{
	if (h->n >= lim->max_headers)
		return -E2BIG;
	if (h->n == h->hcap) {
		size_t cap = h->hcap ? h->hcap * 2 : 16;
		struct proxy_hdr_off *n = realloc(h->hdrs, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		h->hdrs = n;
		h->hcap = cap;
	}
	h->hdrs[h->n++] = (struct proxy_hdr_off){(uint32_t)h->len, 0, 0, 0};
	return 0;
}

int proxy_head_append(proxy_head_t *h, int what, const char *d, size_t n,
		      const proxy_limits_t *lim)
{
	if (what == HEAD_URL) {
		if (h->url_len + n > lim->max_request_line)
			return -ENAMETOOLONG;
	} else {
		h->header_bytes += n;
		if (h->header_bytes > lim->max_header_bytes)
			return -E2BIG;
	}
	if (!h->item_open) {
		/* A new item starts where the buffer ends. */
		if (what == HEAD_NAME) {
			int r = head_new_header(h, lim);
			if (r < 0)
				return r;
		} else if (what == HEAD_VALUE) {
			if (h->n == 0)
				return -EINVAL;
			h->hdrs[h->n - 1].value = (uint32_t)h->len;
		} else {
			h->url = (uint32_t)h->len;
		}
		h->item_open = true;
	}
	if (head_grow(h, n) < 0)
		return -ENOMEM;
	memcpy(h->buf + h->len, d, n);
	h->len += n;
	if (what == HEAD_URL)
		h->url_len += (uint32_t)n;
	else if (what == HEAD_NAME)
		h->hdrs[h->n - 1].name_len += (uint32_t)n;
	else
		h->hdrs[h->n - 1].value_len += (uint32_t)n;
	return 0;
}

void proxy_head_end_item(proxy_head_t *h, int what)
{
	if (head_grow(h, 1) < 0)
		return;
	/* llhttp reports no piece at all for an empty value. */
	if (!h->item_open && what == HEAD_VALUE && h->n)
		h->hdrs[h->n - 1].value = (uint32_t)h->len;
	if (!h->item_open && what == HEAD_NAME)
		return; /* an empty name: llhttp refuses those */
	h->buf[h->len++] = '\0';
	h->item_open = false;
}

int proxy_head_finish(proxy_head_t *h)
{
	if (head_grow(h, 1) < 0)
		return -ENOMEM;
	h->buf[h->len] = '\0';
	if (h->n + 1 > h->lcap) {
		size_t cap = h->n + 1 > 16 ? h->n + 1 : 16;
		proxy_header_t *l = realloc(h->list, cap * sizeof *l);
		if (!l)
			return -ENOMEM;
		h->list = l;
		h->lcap = cap;
	}
	for (size_t i = 0; i < h->n; i++) {
		h->list[i].name = h->buf + h->hdrs[i].name;
		/* A header whose value never started (a name at the end of a
		 * head) reads as empty. */
		h->list[i].value = h->hdrs[i].value ? h->buf + h->hdrs[i].value
						    : h->buf + h->len;
	}
	h->list[h->n] = (proxy_header_t){NULL, NULL};
	return 0;
}

const char *proxy_head_url(const proxy_head_t *h)
{
	return h->url_len ? h->buf + h->url : "";
}

const char *proxy_head_get(const proxy_head_t *h, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; h->list && i < h->n; i++)
		if (h->hdrs[i].name_len == len && strcasecmp(h->list[i].name, name) == 0)
			return h->list[i].value;
	return NULL;
}

void proxy_head_reset(proxy_head_t *h)
{
	h->len = 0;
	h->n = 0;
	h->url = h->url_len = 0;
	h->item_open = false;
	h->header_bytes = 0;
}

void proxy_head_free(proxy_head_t *h)
{
	free(h->buf);
	free(h->hdrs);
	free(h->list);
	memset(h, 0, sizeof *h);
}

/* Does the comma-separated list contain token (case-insensitive)? */
static bool list_has_token(const char *list, const char *token)
{
	size_t tl = strlen(token);
	for (const char *p = list; p && *p;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *e = p;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
			return true;
		p = e;
	}
	return false;
}

bool proxy_hop_by_hop(const char *name, const char *connection)
{
	return proxy_hop_by_hop_n(name, strlen(name), connection);
}

bool proxy_hop_by_hop_n(const char *name, size_t n, const char *connection)
{
	/* By length first: this runs for every header of every message. */
	static const char *const by_len[][3] = {
		[2] = {"te"},
		[4] = {"host"},
		[7] = {"trailer", "upgrade"},
		[10] = {"connection", "keep-alive"},
		[14] = {"content-length", "http2-settings"},
		[16] = {"proxy-connection"},
		[17] = {"transfer-encoding"},
		[18] = {"proxy-authenticate"},
		[19] = {"proxy-authorization"},
	};
	if (name[0] == ':') /* HTTP/2 pseudo-headers */
		return true;
	/* The first letter (lowered) rules out nearly every other header
	 * before a full comparison. */
	if (n < sizeof by_len / sizeof by_len[0])
		for (int i = 0; i < 3 && by_len[n][i]; i++)
			if ((name[0] | 0x20) == by_len[n][i][0] &&
			    strncasecmp(name, by_len[n][i], n) == 0)
				return true;
	return connection && list_has_token(connection, name);
}

static bool edited(const struct proxy_edit *e, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].name_len == len && strcasecmp(e[i].name, name) == 0)
			return true;
	return false;
}

/* "name: value\r\n", with one check for room. */
static void put_line(strbuf_t *sb, const char *name, size_t nl, const char *value, size_t vl)
{
	sb_reserve(sb, nl + vl + 4);
	char *p = sb->buf + sb->len;
	memcpy(p, name, nl);
	p += nl;
	*p++ = ':';
	*p++ = ' ';
	memcpy(p, value, vl);
	p += vl;
	*p++ = '\r';
	*p++ = '\n';
	*p = '\0';
	sb->len = (size_t)(p - sb->buf);
}

void proxy_headers_emit(strbuf_t *sb, const proxy_head_t *h, const char *connection,
			const struct proxy_edit *edits, size_t n_edits)
{
	/* Lengths known from parsing spare a strlen per name and value, and
	 * rule out most comparisons. */
	for (size_t i = 0; i < h->n; i++) {
		const struct proxy_hdr_off *o = &h->hdrs[i];
		const char *name = h->buf + o->name;
		if (proxy_hop_by_hop_n(name, o->name_len, connection))
			continue;
		if (edited(edits, n_edits, name, o->name_len))
			continue;
		put_line(sb, name, o->name_len, o->value ? h->buf + o->value : "", o->value_len);
	}
	for (size_t i = 0; i < n_edits; i++)
		if (edits[i].value)
			put_line(sb, edits[i].name, edits[i].name_len, edits[i].value,
				 edits[i].value_len);
}

const char *proxy_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return status < 400 ? "OK" : "Error";
	}
}

void proxy_simple_response(strbuf_t *sb, int status, bool close)
{
	const char *reason = proxy_reason(status);
	sb_printf(sb,
		  "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s\n",
		  status, reason, strlen(reason) + 1, close ? "Connection: close\r\n" : "",
		  reason);
}
