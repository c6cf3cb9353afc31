#include "tar_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

enum { ST_HEADER, ST_DATA, ST_PAD, ST_META, ST_END };

struct tar_reader {
	const tar_reader_ops_t *ops;
	void *ud;
	int state;
	uint8_t block[TAR_BLOCK];
	size_t have;       /* bytes in block */
	int64_t left;      /* data bytes left in the entry */
	size_t pad;        /* padding bytes left */
	bool skip;         /* data of an entry we do not deliver */
	int zero_blocks;
	/* Extended data (pax / GNU long name) being collected. */
	char meta_kind;    /* 'x', 'L', 'K', 'g' */
	strbuf_t meta;
	/* Overrides from the extended data, for the next entry. */
	char *next_path, *next_link;
	int64_t next_size;
	bool has_next_size;
	unsigned skipped;
};

tar_reader_t *tar_reader_new(const tar_reader_ops_t *ops, void *ud)
{
	tar_reader_t *r = xcalloc(1, sizeof *r);
	r->ops = ops;
	r->ud = ud;
	return r;
}

void tar_reader_free(tar_reader_t *r)
{
	if (!r)
		return;
	sb_free(&r->meta);
	free(r->next_path);
	free(r->next_link);
	free(r);
}

unsigned tar_reader_skipped(const tar_reader_t *r)
{
	return r->skipped;
}

bool tar_clean_path(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0)
			break;
		if (len == 1 && p[0] == '.') {
			/* skip */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			return false;
		} else {
			if (n + len + 2 > cap)
				return false;
			if (n)
				out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
	}
	if (n == 0)
		return false;
	out[n] = '\0';
	return true;
}

/* Octal field, or the base-256 form GNU tar uses for large values. */
static bool parse_num(const uint8_t *f, size_t n, int64_t *out)
{
	if (f[0] & 0x80) {
		if (f[0] != 0x80)
			return false; /* negative or absurd */
		uint64_t v = 0;
		for (size_t i = 1; i < n; i++) {
			if (v >> 55)
				return false;
			v = v << 8 | f[i];
		}
		if (v > (uint64_t)INT64_MAX)
			return false;
		*out = (int64_t)v;
		return true;
	}
	int64_t v = 0;
	size_t i = 0;
	while (i < n && (f[i] == ' ' || f[i] == '\0'))
		i++;
	bool any = false;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v > (INT64_MAX >> 3))
			return false;
		v = v * 8 + (f[i] - '0');
		any = true;
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return false;
	*out = any ? v : 0;
	return true;
}

static bool checksum_ok(const uint8_t *b)
{
	int64_t want;
	if (!parse_num(b + 148, 8, &want))
		return false;
	uint64_t sum = 0;
	for (int i = 0; i < TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : b[i];
	return (int64_t)sum == want;
}

static bool all_zero(const uint8_t *b)
{
	for (int i = 0; i < TAR_BLOCK; i++)
		if (b[i])
			return false;
	return true;
}

static void copy_field(char *dst, const uint8_t *src, size_t n)
{
	size_t k = 0;
	while (k < n && src[k])
		k++;
	memcpy(dst, src, k);
	dst[k] = '\0';
}

/* "len key=value\n" records. */
static int parse_pax(tar_reader_t *r, hutch_err_t *err)
{
	const char *p = r->meta.buf ? r->meta.buf : "";
	const char *end = p + r->meta.len;
	while (p < end) {
		char *sp;
		long len = strtol(p, &sp, 10);
		if (sp == p || *sp != ' ' || len <= 0 || len > end - p || p[len - 1] != '\n')
			return hutch_err_set(err, EINVAL, "tar: malformed pax record");
		const char *kv = sp + 1;
		const char *eq = memchr(kv, '=', (size_t)(p + len - 1 - kv));
		if (!eq)
			return hutch_err_set(err, EINVAL, "tar: malformed pax record");
		size_t kl = (size_t)(eq - kv);
		size_t vl = (size_t)(p + len - 1 - (eq + 1));
		if (kl == 4 && !memcmp(kv, "path", 4)) {
			free(r->next_path);
			r->next_path = xstrndup(eq + 1, vl);
		} else if (kl == 8 && !memcmp(kv, "linkpath", 8)) {
			free(r->next_link);
			r->next_link = xstrndup(eq + 1, vl);
		} else if (kl == 4 && !memcmp(kv, "size", 4)) {
			char num[32];
			if (vl == 0 || vl >= sizeof num)
				return hutch_err_set(err, EINVAL, "tar: bad pax size");
			memcpy(num, eq + 1, vl);
			num[vl] = '\0';
			char *e2;
			long long v = strtoll(num, &e2, 10);
			if (*e2 || v < 0)
				return hutch_err_set(err, EINVAL, "tar: bad pax size");
			r->next_size = v;
			r->has_next_size = true;
		}
		p += len;
	}
	return 0;
}

static void clear_next(tar_reader_t *r)
{
	free(r->next_path);
	free(r->next_link);
	r->next_path = r->next_link = NULL;
	r->has_next_size = false;
}

static int on_header(tar_reader_t *r, hutch_err_t *err)
{
	const uint8_t *b = r->block;
	if (all_zero(b)) {
		if (++r->zero_blocks == 2)
			r->state = ST_END;
		return 0;
	}
	r->zero_blocks = 0;
	if (!checksum_ok(b))
		return hutch_err_set(err, EINVAL, "tar: header checksum mismatch (not a tar stream?)");
	int64_t size, mode, mtime;
	if (!parse_num(b + 124, 12, &size) || !parse_num(b + 100, 8, &mode) ||
	    !parse_num(b + 136, 12, &mtime))
		return hutch_err_set(err, EINVAL, "tar: bad number in header");
	char type = (char)b[156];
	if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
		if (size > 1024 * 1024)
			return hutch_err_set(err, EINVAL, "tar: extended header too large");
		r->meta_kind = type;
		sb_reset(&r->meta);
		r->left = size;
		r->pad = tar_padding(size);
		r->state = size ? ST_META : ST_HEADER;
		if (!size && type == 'x')
			clear_next(r);
		return 0;
	}
	if (r->has_next_size)
		size = r->next_size;

	tar_entry_t *e = xcalloc(1, sizeof *e);
	char raw[TAR_PATH_MAX + 256];
	if (r->next_path) {
		snprintf(raw, sizeof raw, "%s", r->next_path);
	} else {
		char name[101], prefix[156];
		copy_field(name, b, 100);
		copy_field(prefix, b + 345, 155);
		bool ustar = memcmp(b + 257, "ustar", 5) == 0;
		if (ustar && prefix[0])
			snprintf(raw, sizeof raw, "%s/%s", prefix, name);
		else
			snprintf(raw, sizeof raw, "%s", name);
	}
	if (r->next_link)
		snprintf(e->link, sizeof e->link, "%s", r->next_link);
	else
		copy_field(e->link, b + 157, 100);
	e->mode = (uint32_t)(mode & 07777);
	e->size = size;
	e->mtime = mtime;
	clear_next(r);

	bool deliver = true;
	switch (type) {
	case '0':
	case '\0':
	case '7':
		e->type = TAR_FILE;
		break;
	case '5':
		e->type = TAR_DIR;
		break;
	case '2':
		e->type = TAR_SYMLINK;
		break;
	default:
		/* Hard links, devices, fifos: not copied into sandboxes. */
		deliver = false;
		r->skipped++;
	}
	if (deliver && !tar_clean_path(raw, e->path, sizeof e->path)) {
		/* "." or "./" is the destination itself: nothing to create. */
		bool is_root = e->type == TAR_DIR;
		for (const char *p = raw; *p && is_root; p++)
			if (*p != '.' && *p != '/')
				is_root = false;
		if (!is_root) {
			int rr = hutch_err_set(err, EINVAL, "tar entry `%.200s`: path escapes the destination",
					       raw);
			free(e);
			return rr;
		}
		deliver = false;
	}
	if (e->type == TAR_SYMLINK && deliver && !e->link[0]) {
		free(e);
		return hutch_err_set(err, EINVAL, "tar entry `%.200s`: symlink without target", raw);
	}
	int rc = 0;
	if (deliver)
		rc = r->ops->on_entry(r->ud, e, err);
	free(e);
	if (rc < 0)
		return rc;
	r->skip = !deliver;
	r->left = (type == '5') ? 0 : size;
	if (type == '2' || type == '5')
		r->left = 0;
	r->pad = tar_padding(r->left);
	if (r->left > 0) {
		r->state = ST_DATA;
	} else {
		if (deliver && (rc = r->ops->on_entry_end(r->ud, err)) < 0)
			return rc;
		r->state = ST_HEADER;
	}
	return 0;
}

int tar_reader_feed(tar_reader_t *r, const uint8_t *data, size_t n, hutch_err_t *err)
{
	int rc;
	while (n > 0) {
		switch (r->state) {
		case ST_END:
			return 0; /* trailing bytes after the end blocks are ignored */
		case ST_HEADER: {
			size_t take = TAR_BLOCK - r->have;
			if (take > n)
				take = n;
			memcpy(r->block + r->have, data, take);
			r->have += take;
			data += take;
			n -= take;
			if (r->have == TAR_BLOCK) {
				r->have = 0;
				if ((rc = on_header(r, err)) < 0)
					return rc;
			}
			break;
		}
		case ST_DATA:
		case ST_META: {
			size_t take = (int64_t)n < r->left ? n : (size_t)r->left;
			if (r->state == ST_META) {
				sb_append_n(&r->meta, data, take);
			} else if (!r->skip && (rc = r->ops->on_data(r->ud, data, take, err)) < 0) {
				return rc;
			}
			data += take;
			n -= take;
			r->left -= (int64_t)take;
			if (r->left == 0) {
				if (r->state == ST_META) {
					if (r->meta_kind == 'x') {
						if ((rc = parse_pax(r, err)) < 0)
							return rc;
					} else if (r->meta_kind == 'L') {
						free(r->next_path);
						r->next_path = xstrndup(r->meta.buf, strnlen(r->meta.buf, r->meta.len));
					} else if (r->meta_kind == 'K') {
						free(r->next_link);
						r->next_link = xstrndup(r->meta.buf, strnlen(r->meta.buf, r->meta.len));
					}
				} else if (!r->skip && (rc = r->ops->on_entry_end(r->ud, err)) < 0) {
					return rc;
				}
				r->state = r->pad ? ST_PAD : ST_HEADER;
			}
			break;
		}
		case ST_PAD: {
			size_t take = n < r->pad ? n : r->pad;
			data += take;
			n -= take;
			r->pad -= take;
			if (r->pad == 0)
				r->state = ST_HEADER;
			break;
		}
		}
	}
	return 0;
}

int tar_reader_finish(tar_reader_t *r, hutch_err_t *err)
{
	/* Accept a stream that ends at an entry boundary even without the
	 * end-of-archive blocks (some writers omit them). */
	if (r->state == ST_END || (r->state == ST_HEADER && r->have == 0 && !r->next_path))
		return 0;
	return hutch_err_set(err, EINVAL, "tar: archive ends in the middle of an entry");
}

size_t tar_padding(int64_t size)
{
	return (size_t)((TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK);
}

static void put_octal(uint8_t *f, size_t n, int64_t v)
{
	/* n-1 digits and a NUL; base-256 when it does not fit. */
	char buf[32];
	snprintf(buf, sizeof buf, "%0*llo", (int)(n - 1), (long long)v);
	if (strlen(buf) <= n - 1) {
		memcpy(f, buf, n - 1);
		f[n - 1] = '\0';
		return;
	}
	memset(f, 0, n);
	f[0] = 0x80;
	for (size_t i = n - 1; i > 0 && v; i--, v >>= 8)
		f[i] = (uint8_t)(v & 0xff);
}

static void finish_header(uint8_t *b)
{
	memset(b + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < TAR_BLOCK; i++)
		sum += b[i];
	snprintf((char *)b + 148, 8, "%06o", sum);
	b[155] = ' ';
}

static void ustar_block(uint8_t *b, const char *name, char type, uint32_t mode, int64_t size,
			int64_t mtime, const char *link)
{
	memset(b, 0, TAR_BLOCK);
	/* A longer name went into a pax record; this one is only a hint. */
	memcpy(b, name, strnlen(name, 99));
	put_octal(b + 100, 8, mode);
	put_octal(b + 108, 8, 0);
	put_octal(b + 116, 8, 0);
	put_octal(b + 124, 12, size);
	put_octal(b + 136, 12, mtime < 0 ? 0 : mtime);
	b[156] = (uint8_t)type;
	if (link)
		strncpy((char *)b + 157, link, 100);
	memcpy(b + 257, "ustar", 6);
	memcpy(b + 263, "00", 2);
	finish_header(b);
}

static void pax_record(strbuf_t *sb, const char *key, const char *value)
{
	/* The length counts itself: find the fixed point. */
	size_t base = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
	size_t len = base + 1;
	char num[32];
	for (;;) {
		int d = snprintf(num, sizeof num, "%zu", len);
		if (base + (size_t)d == len)
			break;
		len = base + (size_t)d;
	}
	sb_printf(sb, "%zu %s=%s\n", len, key, value);
}

size_t tar_header_encode(const tar_entry_t *e, uint8_t *out, size_t cap)
{
	char type = e->type == TAR_DIR ? '5' : e->type == TAR_SYMLINK ? '2' : '0';
	int64_t size = e->type == TAR_FILE ? e->size : 0;
	bool long_name = strlen(e->path) + (e->type == TAR_DIR ? 1 : 0) > 99;
	bool long_link = e->type == TAR_SYMLINK && strlen(e->link) > 99;
	size_t n = 0;
	char name[TAR_PATH_MAX + 2];
	snprintf(name, sizeof name, "%s%s", e->path, e->type == TAR_DIR ? "/" : "");
	if (long_name || long_link) {
		strbuf_t pax = STRBUF_INIT;
		if (long_name)
			pax_record(&pax, "path", name);
		if (long_link)
			pax_record(&pax, "linkpath", e->link);
		size_t need = TAR_BLOCK + pax.len + tar_padding((int64_t)pax.len) + TAR_BLOCK;
		if (need > cap) {
			sb_free(&pax);
			return 0;
		}
		ustar_block(out, "././@PaxHeader", 'x', 0644, (int64_t)pax.len, e->mtime, NULL);
		memcpy(out + TAR_BLOCK, pax.buf, pax.len);
		memset(out + TAR_BLOCK + pax.len, 0, tar_padding((int64_t)pax.len));
		n = TAR_BLOCK + pax.len + tar_padding((int64_t)pax.len);
		sb_free(&pax);
	}
	if (n + TAR_BLOCK > cap)
		return 0;
	ustar_block(out + n, name, type, e->mode, size, e->mtime,
		    e->type == TAR_SYMLINK ? e->link : NULL);
	return n + TAR_BLOCK;
}
