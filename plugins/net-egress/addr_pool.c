/*
 * addr_pool.c: the sandboxes' address pools. Slot s is host number s + 2
 * in the IPv4 pool and, when configured, in the IPv6 pool; host number 1
 * is the gateway. A slot also names the host end of the sandbox's veth
 * (<prefix><host number>), so one number ties address, interface and
 * nftables elements together.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"

/* Interface names must fit IFNAMSIZ with the prefix: at most 5 digits. */
#define MAX_SLOTS 65000u

int eg_pool_init(eg_pool_t *p, const char *pool4, const char *pool6, hutch_err_t *err)
{
	memset(p, 0, sizeof *p);
	eg_cidr_t c;
	if (eg_cidr_parse(pool4, &c, err) < 0)
		return hutch_err_prefix(err, "pool");
	if (c.family != AF_INET)
		return hutch_err_set(err, EINVAL, "pool `%s` must be an IPv4 prefix (IPv6 goes in pool6)",
				     pool4);
	if (c.plen > 29)
		return hutch_err_set(err, EINVAL, "pool `%s` is too small (at most /29)", pool4);
	memcpy(p->net4, c.addr, 4);
	p->plen4 = c.plen;
	uint64_t hosts = (1ull << (32 - c.plen)) - 3; /* network, gateway, broadcast */
	p->n_slots = hosts > MAX_SLOTS ? MAX_SLOTS : (uint32_t)hosts;
	if (pool6 && *pool6) {
		if (eg_cidr_parse(pool6, &c, err) < 0)
			return hutch_err_prefix(err, "pool6");
		if (c.family != AF_INET6)
			return hutch_err_set(err, EINVAL, "pool6 `%s` must be an IPv6 prefix", pool6);
		if (c.plen > 112)
			return hutch_err_set(err, EINVAL, "pool6 `%s` is too small (at most /112)",
					     pool6);
		p->has6 = true;
		memcpy(p->net6, c.addr, 16);
		p->plen6 = c.plen;
	}
	p->used = xcalloc((p->n_slots + 7) / 8, 1);
	pthread_mutex_init(&p->lock, NULL);
	return 0;
}

void eg_pool_fini(eg_pool_t *p)
{
	if (!p->used)
		return;
	free(p->used);
	p->used = NULL;
	pthread_mutex_destroy(&p->lock);
}

static bool bit_get(const eg_pool_t *p, uint32_t s)
{
	return p->used[s / 8] & (1u << (s % 8));
}

static void bit_set(eg_pool_t *p, uint32_t s, bool on)
{
	if (on)
		p->used[s / 8] = (uint8_t)(p->used[s / 8] | (1u << (s % 8)));
	else
		p->used[s / 8] = (uint8_t)(p->used[s / 8] & ~(1u << (s % 8)));
}

int eg_pool_alloc(eg_pool_t *p, uint32_t *slot, hutch_err_t *err)
{
	pthread_mutex_lock(&p->lock);
	for (uint32_t i = 0; i < p->n_slots; i++) {
		uint32_t s = (p->cursor + i) % p->n_slots;
		if (!bit_get(p, s)) {
			bit_set(p, s, true);
			p->cursor = (s + 1) % p->n_slots;
			pthread_mutex_unlock(&p->lock);
			*slot = s;
			return 0;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return hutch_err_set(err, ENOSPC, "address pool is full (%u sandboxes)", p->n_slots);
}

bool eg_pool_reserve(eg_pool_t *p, uint32_t slot)
{
	if (slot >= p->n_slots)
		return false;
	pthread_mutex_lock(&p->lock);
	bool free_now = !bit_get(p, slot);
	if (free_now) {
		bit_set(p, slot, true);
		if (slot >= p->cursor)
			p->cursor = (slot + 1) % p->n_slots;
	}
	pthread_mutex_unlock(&p->lock);
	return free_now;
}

void eg_pool_release(eg_pool_t *p, uint32_t slot)
{
	if (slot >= p->n_slots)
		return;
	pthread_mutex_lock(&p->lock);
	bit_set(p, slot, false);
	pthread_mutex_unlock(&p->lock);
}

void eg_pool_addr4(const eg_pool_t *p, uint32_t host, uint8_t out[4])
{
	uint32_t net = ((uint32_t)p->net4[0] << 24) | ((uint32_t)p->net4[1] << 16) |
		       ((uint32_t)p->net4[2] << 8) | p->net4[3];
	uint32_t a = net + host;
	out[0] = (uint8_t)(a >> 24);
	out[1] = (uint8_t)(a >> 16);
	out[2] = (uint8_t)(a >> 8);
	out[3] = (uint8_t)a;
}

void eg_pool_addr6(const eg_pool_t *p, uint32_t host, uint8_t out[16])
{
	memcpy(out, p->net6, 16);
	/* host < 2^32 and plen6 <= 112: add into the low 32 bits, with carry. */
	uint64_t carry = host;
	for (int i = 15; i >= 0 && carry; i--) {
		carry += out[i];
		out[i] = (uint8_t)carry;
		carry >>= 8;
	}
}

int64_t eg_pool_slot_of(const eg_pool_t *p, int family, const uint8_t *addr)
{
	if (family == AF_INET) {
		eg_cidr_t c;
		eg_pool_cidr4(p, &c);
		if (!eg_cidr_contains(&c, AF_INET, addr))
			return -1;
		uint32_t a = ((uint32_t)addr[0] << 24) | ((uint32_t)addr[1] << 16) |
			     ((uint32_t)addr[2] << 8) | addr[3];
		uint32_t n = ((uint32_t)p->net4[0] << 24) | ((uint32_t)p->net4[1] << 16) |
			     ((uint32_t)p->net4[2] << 8) | p->net4[3];
		uint32_t host = a - n;
		if (host < 2 || host - 2 >= p->n_slots)
			return -1;
		return host - 2;
	}
	if (family == AF_INET6 && p->has6) {
		eg_cidr_t c;
		eg_pool_cidr6(p, &c);
		if (!eg_cidr_contains(&c, AF_INET6, addr))
			return -1;
		/* The host number must fit the low 32 bits. */
		uint8_t diff[16];
		int borrow = 0;
		for (int i = 15; i >= 0; i--) {
			int d = addr[i] - p->net6[i] - borrow;
			borrow = d < 0;
			diff[i] = (uint8_t)(d + (borrow ? 256 : 0));
		}
		for (int i = 0; i < 12; i++)
			if (diff[i])
				return -1;
		uint32_t host = ((uint32_t)diff[12] << 24) | ((uint32_t)diff[13] << 16) |
				((uint32_t)diff[14] << 8) | diff[15];
		if (host < 2 || host - 2 >= p->n_slots)
			return -1;
		return host - 2;
	}
	return -1;
}

void eg_pool_cidr4(const eg_pool_t *p, eg_cidr_t *out)
{
	memset(out, 0, sizeof *out);
	out->family = AF_INET;
	out->plen = (uint8_t)p->plen4;
	memcpy(out->addr, p->net4, 4);
}

void eg_pool_cidr6(const eg_pool_t *p, eg_cidr_t *out)
{
	memset(out, 0, sizeof *out);
	out->family = AF_INET6;
	out->plen = (uint8_t)p->plen6;
	memcpy(out->addr, p->net6, 16);
}
