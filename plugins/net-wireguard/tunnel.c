/*
 * tunnel.c: the tunnels of each tenant, the subnet each gets from the
 * pool, the member addresses inside it, and the registry of the sandboxes
 * the plugin saw attach.
 *
 * A tunnel is named per tenant: ("a", "mesh") and ("b", "mesh") are two
 * tunnels with two subnets, and nothing routes between them. Host number 1
 * of every subnet is kept for the tunnel's gateway; members get 2, 3, ...
 * in turn (a freed number is not handed out again at once).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strbuf.h"
#include "wg.h"

bool wg_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > WG_NAME_MAX || name[0] == '-' || name[n - 1] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

static bool bit_get(const uint8_t *b, uint32_t i)
{
	return b[i / 8] & (1u << (i % 8));
}

static void bit_set(uint8_t *b, uint32_t i, bool on)
{
	if (on)
		b[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		b[i / 8] &= (uint8_t)~(1u << (i % 8));
}

static uint32_t be32(const uint8_t a[4])
{
	return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

static void put_be32(uint32_t v, uint8_t out[4])
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

void wg_subnet_addr(const wg_instance_t *in, uint32_t index, uint8_t out[4])
{
	uint32_t size = 1u << (32 - in->cfg->subnet_prefix);
	put_be32(be32(in->pool_net) + index * size, out);
}

bool wg_subnet_reserve(wg_instance_t *in, uint32_t index)
{
	if (index >= in->n_subnets || bit_get(in->subnet_used, index))
		return false;
	bit_set(in->subnet_used, index, true);
	return true;
}

void wg_tunnel_addr(const wg_tunnel_t *t, uint32_t host, uint8_t out[4])
{
	put_be32(be32(t->net) + host, out);
}

bool wg_tunnel_host_reserve(wg_tunnel_t *t, uint32_t host)
{
	if (host < 2 || host >= t->n_hosts - 1 || bit_get(t->used, host))
		return false;
	bit_set(t->used, host, true);
	return true;
}

int wg_tunnel_host_alloc(wg_tunnel_t *t, uint32_t *host, hutch_err_t *err)
{
	uint32_t span = t->n_hosts - 3; /* 2 .. n_hosts-2 */
	for (uint32_t i = 0; i < span; i++) {
		uint32_t h = 2 + (t->cursor + i) % span;
		if (wg_tunnel_host_reserve(t, h)) {
			t->cursor = h - 2 + 1;
			*host = h;
			return 0;
		}
	}
	return hutch_err_set(err, ENOSPC, "tunnel %s: all %u addresses of its subnet are taken",
			     t->name, span);
}

void wg_tunnel_host_release(wg_tunnel_t *t, uint32_t host)
{
	if (host >= 2 && host < t->n_hosts - 1)
		bit_set(t->used, host, false);
}

static wg_tunnel_t *tunnel_find(wg_instance_t *in, const char *tenant, const char *name)
{
	for (size_t i = 0; i < in->n_tunnels; i++)
		if (strcmp(in->tunnels[i]->tenant, tenant) == 0 &&
		    strcmp(in->tunnels[i]->name, name) == 0)
			return in->tunnels[i];
	return NULL;
}

/* Makes a tunnel on subnet index (already reserved). */
static wg_tunnel_t *tunnel_new(wg_instance_t *in, const char *tenant, const char *name,
			       uint32_t index)
{
	wg_tunnel_t *t = xcalloc(1, sizeof *t);
	snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
	snprintf(t->name, sizeof t->name, "%s", name);
	t->index = index;
	t->plen = (unsigned)in->cfg->subnet_prefix;
	wg_subnet_addr(in, index, t->net);
	t->n_hosts = 1u << (32 - t->plen);
	t->used = xcalloc((t->n_hosts + 7) / 8, 1);
	t->gw.proc.pidfd = -1;
	t->gw.proc.pid = -1;
	pthread_mutex_init(&t->lock, NULL);
	in->tunnels = xrealloc(in->tunnels, (in->n_tunnels + 1) * sizeof *in->tunnels);
	in->tunnels[in->n_tunnels++] = t;
	return t;
}

int wg_tunnel_get(wg_instance_t *in, const char *tenant, const char *name, bool create,
		  wg_tunnel_t **out, hutch_err_t *err)
{
	if (!wg_name_ok(name))
		return hutch_err_set(err, EINVAL,
				     "tunnel name `%s`: 1-63 of [a-z0-9-], not starting or ending with `-`",
				     name ? name : "");
	wg_tunnel_t *t = tunnel_find(in, tenant, name);
	if (!t && !create)
		return hutch_err_set(err, ENOENT, "no tunnel `%s`", name);
	if (!t) {
		uint32_t index = 0;
		while (index < in->n_subnets && !wg_subnet_reserve(in, index))
			index++;
		if (index == in->n_subnets)
			return hutch_err_set(err, ENOSPC,
					     "the pool %s has no free /%u subnet for tunnel `%s`",
					     in->cfg->pool, (unsigned)in->cfg->subnet_prefix, name);
		t = tunnel_new(in, tenant, name, index);
	}
	*out = t;
	return 0;
}

wg_tunnel_t *wg_tunnel_restore(wg_instance_t *in, const char *tenant, const char *name,
			       uint32_t index)
{
	wg_tunnel_t *t = tunnel_find(in, tenant, name);
	if (t)
		return t->index == index ? t : NULL;
	if (!wg_subnet_reserve(in, index))
		return NULL;
	return tunnel_new(in, tenant, name, index);
}

static void tunnel_free(wg_tunnel_t *t)
{
	/* A gateway that runs stays for the next hutchd (state.c). */
	if (t->gw.proc.pidfd >= 0)
		close(t->gw.proc.pidfd);
	pthread_mutex_destroy(&t->lock);
	free(t->members);
	free(t->used);
	free(t);
}

void wg_tunnel_maybe_free(wg_instance_t *in, wg_tunnel_t *t)
{
	if (t->n_members > 0 || t->explicit_ || t->pending > 0)
		return;
	for (size_t i = 0; i < in->n_tunnels; i++) {
		if (in->tunnels[i] != t)
			continue;
		in->tunnels[i] = in->tunnels[--in->n_tunnels];
		bit_set(in->subnet_used, t->index, false);
		tunnel_free(t);
		return;
	}
}

void wg_tunnels_free(wg_instance_t *in)
{
	for (size_t i = 0; i < in->n_tunnels; i++)
		tunnel_free(in->tunnels[i]);
	free(in->tunnels);
	in->tunnels = NULL;
	in->n_tunnels = 0;
}

/* ---- the sandboxes ---- */

wg_sandbox_t *wg_sandbox_find(wg_instance_t *in, const char *id)
{
	for (size_t i = 0; i < in->n_sandboxes; i++)
		if (strcmp(in->sandboxes[i]->id, id) == 0)
			return in->sandboxes[i];
	return NULL;
}

wg_sandbox_t *wg_sandbox_add(wg_instance_t *in, const char *id, const char *tenant,
			     const char *netns_path)
{
	wg_sandbox_t *sb = wg_sandbox_find(in, id);
	if (sb)
		return sb;
	sb = xcalloc(1, sizeof *sb);
	snprintf(sb->id, sizeof sb->id, "%s", id);
	snprintf(sb->tenant, sizeof sb->tenant, "%s", tenant ? tenant : "");
	snprintf(sb->netns_path, sizeof sb->netns_path, "%s", netns_path ? netns_path : "");
	in->sandboxes = xrealloc(in->sandboxes, (in->n_sandboxes + 1) * sizeof *in->sandboxes);
	in->sandboxes[in->n_sandboxes++] = sb;
	return sb;
}

void wg_sandbox_remove(wg_instance_t *in, wg_sandbox_t *sb)
{
	for (size_t i = 0; i < in->n_sandboxes; i++) {
		if (in->sandboxes[i] != sb)
			continue;
		in->sandboxes[i] = in->sandboxes[--in->n_sandboxes];
		free(sb);
		return;
	}
}
