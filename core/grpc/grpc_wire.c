#include "grpc_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Smallest buffer the deframer starts with; growth doubles from here, capped
 * at the announced length. */
#define DEFRAMER_MIN_CAP 4096

/* Makes room for need bytes in the message being filled. */
static int deframer_grow(struct grpc_deframer *d, size_t need)
{
	struct grpc_msg *m = d->msg;
	if (m->cap >= need)
		return 0;
	size_t cap = m->cap < DEFRAMER_MIN_CAP ? DEFRAMER_MIN_CAP : m->cap;
	while (cap < need)
		cap *= 2;
	if (cap > d->want)
		cap = d->want;
	struct grpc_msg *n = realloc(m, sizeof *n + cap);
	if (!n)
		return -ENOMEM;
	n->cap = cap;
	d->msg = n;
	return 0;
}

int grpc_deframer_push(struct grpc_deframer *d, size_t max_len, const uint8_t **data, size_t *len,
		       struct grpc_msg **out)
{
	*out = NULL;
	while (*len > 0 || (d->hdr_len == GRPC_PREFIX_LEN && !d->msg)) {
		if (d->hdr_len < GRPC_PREFIX_LEN) {
			size_t n = GRPC_PREFIX_LEN - d->hdr_len;
			if (n > *len)
				n = *len;
			memcpy(d->hdr + d->hdr_len, *data, n);
			d->hdr_len += n;
			*data += n;
			*len -= n;
			if (d->hdr_len < GRPC_PREFIX_LEN)
				return 0;
			if (d->hdr[0] > 1)
				return -EPROTO;
			d->want = (size_t)d->hdr[1] << 24 | (size_t)d->hdr[2] << 16 |
				  (size_t)d->hdr[3] << 8 | (size_t)d->hdr[4];
			if (d->want > max_len)
				return -EMSGSIZE;
		}
		if (!d->msg) {
			/* Start small; grow with what actually arrives. */
			size_t first = d->want < DEFRAMER_MIN_CAP ? d->want : DEFRAMER_MIN_CAP;
			struct grpc_msg *m = malloc(sizeof *m + first);
			if (!m)
				return -ENOMEM;
			m->len = 0;
			m->cap = first;
			m->compressed = d->hdr[0] == 1;
			m->link.prev = m->link.next = &m->link;
			d->msg = m;
		}
		size_t n = d->want - d->msg->len;
		if (n > *len)
			n = *len;
		if (n > 0) {
			int r = deframer_grow(d, d->msg->len + n);
			if (r < 0)
				return r;
			memcpy(d->msg->data + d->msg->len, *data, n);
			d->msg->len += n;
			*data += n;
			*len -= n;
		}
		if (d->msg->len == d->want) {
			*out = d->msg;
			d->msg = NULL;
			d->hdr_len = 0;
			d->want = 0;
			return 1;
		}
	}
	return 0;
}

bool grpc_deframer_idle(const struct grpc_deframer *d)
{
	return d->hdr_len == 0 && !d->msg;
}

void grpc_deframer_reset(struct grpc_deframer *d)
{
	free(d->msg);
	d->msg = NULL;
	d->hdr_len = 0;
	d->want = 0;
}

void grpc_prefix_write(uint8_t out[GRPC_PREFIX_LEN], uint32_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

int grpc_timeout_parse(const char *value, size_t len, uint64_t *ms)
{
	/* TimeoutValue is at most 8 digits, so the arithmetic cannot overflow. */
	if (len < 2 || len > 9)
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (value[i] < '0' || value[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(value[i] - '0');
	}
	switch (value[len - 1]) {
	case 'H':
		*ms = v * 3600 * 1000;
		break;
	case 'M':
		*ms = v * 60 * 1000;
		break;
	case 'S':
		*ms = v * 1000;
		break;
	case 'm':
		*ms = v;
		break;
	case 'u':
		*ms = (v + 999) / 1000;
		break;
	case 'n':
		*ms = (v + 999999) / 1000000;
		break;
	default:
		return -EINVAL;
	}
	return 0;
}

static bool plain_byte(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e && c != '%';
}

char *grpc_message_encode(const char *msg, size_t max_out)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *in = (const unsigned char *)msg;
	size_t n = strlen(msg);
	char *out = malloc((n * 3 < max_out ? n * 3 : max_out) + 1);
	if (!out)
		return NULL;
	char *p = out;
	size_t used = 0;
	for (size_t i = 0; i < n;) {
		/* Take a whole UTF-8 sequence (lead byte plus continuation
		 * bytes) or nothing, so a cut never splits a character. */
		size_t seq = 1;
		while (i + seq < n && (in[i + seq] & 0xc0) == 0x80)
			seq++;
		size_t cost = 0;
		for (size_t k = 0; k < seq; k++)
			cost += plain_byte(in[i + k]) ? 1 : 3;
		if (used + cost > max_out)
			break;
		for (size_t k = 0; k < seq; k++, i++) {
			if (plain_byte(in[i])) {
				*p++ = (char)in[i];
			} else {
				*p++ = '%';
				*p++ = hex[in[i] >> 4];
				*p++ = hex[in[i] & 15];
			}
		}
		used += cost;
	}
	*p = '\0';
	return out;
}
