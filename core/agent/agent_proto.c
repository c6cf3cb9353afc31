#include "agent_proto.h"

#include <stdlib.h>
#include <string.h>

void agent_buf_free(agent_buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = b->off = 0;
}

int agent_buf_append(agent_buf_t *b, const void *data, size_t n)
{
	if (b->off > 0 && b->off == b->len) {
		b->off = b->len = 0;
	}
	if (b->len + n > b->cap) {
		/* Compact before growing. */
		if (b->off > 0) {
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		if (b->len + n > b->cap) {
			size_t cap = b->cap ? b->cap : 4096;
			while (cap < b->len + n)
				cap *= 2;
			uint8_t *p = realloc(b->data, cap);
			if (!p)
				return -1;
			b->data = p;
			b->cap = cap;
		}
	}
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

void agent_buf_consume(agent_buf_t *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void agent_frame_begin(agent_fb_t *fb, agent_buf_t *buf, uint8_t type, uint32_t stream)
{
	uint8_t h[AGENT_HEADER_SIZE] = {0};
	h[4] = type;
	put_u32(h + 5, stream);
	fb->buf = buf;
	fb->failed = false;
	/* The frame starts where the unconsumed data ends; compaction in
	 * append only moves data before it, so keep an offset from off. */
	fb->start = buf->len - buf->off;
	if (agent_buf_append(buf, h, sizeof h) < 0)
		fb->failed = true;
}

void agent_frame_raw(agent_fb_t *fb, const void *data, size_t n)
{
	if (!fb->failed && agent_buf_append(fb->buf, data, n) < 0)
		fb->failed = true;
}

void agent_frame_field(agent_fb_t *fb, uint8_t tag, const void *data, size_t n)
{
	uint8_t h[5];
	h[0] = tag;
	put_u32(h + 1, (uint32_t)n);
	agent_frame_raw(fb, h, sizeof h);
	agent_frame_raw(fb, data, n);
}

void agent_frame_str(agent_fb_t *fb, uint8_t tag, const char *s)
{
	agent_frame_field(fb, tag, s ? s : "", s ? strlen(s) : 0);
}

void agent_frame_u32(agent_fb_t *fb, uint8_t tag, uint32_t v)
{
	uint8_t b[4];
	put_u32(b, v);
	agent_frame_field(fb, tag, b, 4);
}

void agent_frame_i64(agent_fb_t *fb, uint8_t tag, int64_t v)
{
	uint8_t b[8];
	uint64_t u = (uint64_t)v;
	put_u32(b, (uint32_t)(u >> 32));
	put_u32(b + 4, (uint32_t)u);
	agent_frame_field(fb, tag, b, 8);
}

int agent_frame_end(agent_fb_t *fb)
{
	if (fb->failed)
		return -1;
	agent_buf_t *b = fb->buf;
	uint8_t *start = b->data + b->off + fb->start;
	size_t total = (b->len - b->off) - fb->start;
	if (total - AGENT_HEADER_SIZE > AGENT_MAX_PAYLOAD) {
		b->len = b->off + fb->start; /* drop the frame */
		return -1;
	}
	put_u32(start, (uint32_t)(total - 4));
	return 0;
}

long agent_frame_parse(const uint8_t *data, size_t n, agent_frame_t *out)
{
	if (n < 4)
		return 0;
	uint32_t len = get_u32(data);
	if (len < AGENT_HEADER_SIZE - 4 || len - (AGENT_HEADER_SIZE - 4) > AGENT_MAX_PAYLOAD)
		return -1;
	if (n < 4 + (size_t)len)
		return 0;
	out->type = data[4];
	out->stream = get_u32(data + 5);
	out->payload = data + AGENT_HEADER_SIZE;
	out->len = len - (AGENT_HEADER_SIZE - 4);
	return (long)(4 + len);
}

void agent_fields_begin(agent_field_iter_t *it, const agent_frame_t *f)
{
	it->p = f->payload;
	it->end = f->payload + f->len;
	it->malformed = false;
}

bool agent_fields_next(agent_field_iter_t *it, agent_field_t *out)
{
	if (it->p == it->end)
		return false;
	if (it->end - it->p < 5) {
		it->malformed = true;
		return false;
	}
	uint32_t len = get_u32(it->p + 1);
	if ((size_t)(it->end - it->p - 5) < len) {
		it->malformed = true;
		return false;
	}
	out->tag = it->p[0];
	out->data = it->p + 5;
	out->len = len;
	it->p += 5 + (size_t)len;
	return true;
}

bool agent_field_u32(const agent_field_t *f, uint32_t *out)
{
	if (f->len != 4)
		return false;
	*out = get_u32(f->data);
	return true;
}

bool agent_field_i64(const agent_field_t *f, int64_t *out)
{
	if (f->len != 8)
		return false;
	*out = (int64_t)((uint64_t)get_u32(f->data) << 32 | get_u32(f->data + 4));
	return true;
}

bool agent_field_str(const agent_field_t *f, char *buf, size_t cap)
{
	if (f->len >= cap || memchr(f->data, '\0', f->len))
		return false;
	memcpy(buf, f->data, f->len);
	buf[f->len] = '\0';
	return true;
}
