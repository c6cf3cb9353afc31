/*
 * wg.h: the net-wireguard plugin's insides, shared by its files.
 *
 * net-wireguard is a network-chain plugin that comes after net-egress. A
 * tunnel is a WireGuard mesh between sandboxes of one tenant: each member
 * sandbox gets an interface ("wg0", "wg1", ... in join order) inside its
 * network namespace, with one IPv4 address from the tunnel's subnet, and
 * every other member as a peer. The interface is the only part of WireGuard
 * inside the sandbox: the member's private key, its UDP socket and the
 * process that encrypts (wireguard-go) stay on the host side.
 *
 * How a member's interface comes to be (userspace backend, wggo.c): the
 * plugin opens a TUN device in the host's namespace under a unique name
 * ("<prefix><8 hex>", also the name of its UAPI socket under
 * /var/run/wireguard), brings it up, and starts wireguard-go on it
 * (WG_TUN_FD), with the UAPI listener it bound itself (WG_UAPI_FD). Once
 * wireguard-go answers on that socket it has found the device up (so its
 * UDP socket is open, in the host's namespace) and is configured: the key,
 * generated here and never written anywhere, and the peers. Only then is
 * the device moved into the sandbox's namespace, renamed, addressed and
 * brought up again there. wireguard-go watches a moved TUN's state by
 * writing to it once a second; the move happens well inside that second,
 * so it never sees the device down (see docs/net-wireguard.md).
 *
 * Files, one concept each:
 *   plugin.c   descriptor, config table, init/fini, the ops table
 *   keys.c     X25519 key pairs and their hex/base64 forms
 *   uapi.c     the WireGuard UAPI protocol (wireguard-go's socket)
 *   link.c     TUN devices and rtnetlink: move, rename, address, route
 *   wggo.c     the userspace backend: wireguard-go processes
 *   tunnel.c   the tunnels of each tenant, their subnets and addresses
 *   member.c   joining and leaving a tunnel, peers kept in step
 *   inspect.c  the API's tunnel ops: create, delete, list with members
 *   names.c    the members' names, published for net-egress's resolver
 *   gateway.c  a tunnel's gateway: its key, namespace and process
 *   peers.c    external peers: add, remove, their wg-quick file
 *   state.c    what survives a hutchd restart (never a private key)
 *
 * Threads: ops run on hutchd's pool threads, several at once for different
 * sandboxes. The instance lock guards the registries (sandboxes, tunnels);
 * each tunnel's lock is held while its members' peer lists change, so a
 * join and a leave of the same tunnel never interleave. No lock is held
 * while a wireguard-go process starts.
 */
#ifndef WG_H
#define WG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hutch/plugin.h>

#include "strbuf.h"

#define WG_PLUGIN_NAME "net-wireguard"
#define WG_PLUGIN_VERSION "0.1.0"

#define WG_KEY_LEN 32
#define WG_KEY_B64_LEN 45 /* 44 characters and a NUL */
#define WG_NAME_MAX 63    /* a tunnel's name: [a-z0-9-], 1-63 */
#define WG_MAX_TUNNELS_PER_SANDBOX 8

/* The bound [plugin.net-wireguard] table (see plugin.c for meanings). */
typedef struct wg_config {
	char *pool;
	int64_t subnet_prefix;
	char *wireguard_go;
	char *backend;
	int64_t memory_limit;
	char *host_prefix;
	char *endpoint_host;
	int64_t start_timeout_ms;
	char *names_dir;
	int64_t gateway_port;
	char *gateway_host;
} wg_config_t;

#define WG_MAX_PEERS 32     /* external peers per tunnel */
#define WG_MAX_PEER_NETS 16 /* allowed IPs per external peer */

/* ---- keys.c ---- */

typedef struct wg_key {
	uint8_t b[WG_KEY_LEN];
} wg_key_t;

/* A fresh X25519 key pair from the system's CSPRNG (OpenSSL). */
int wg_keypair(wg_key_t *priv, wg_key_t *pub, hutch_err_t *err);
/* The public key of priv. */
int wg_pubkey_of(const wg_key_t *priv, wg_key_t *pub, hutch_err_t *err);
void wg_key_wipe(wg_key_t *k);
/* Wipes n bytes at p (a buffer that held a private key); p may be NULL. */
void wg_wipe(void *p, size_t n);
void wg_key_hex(const wg_key_t *k, char out[2 * WG_KEY_LEN + 1]);
int wg_key_from_hex(const char *hex, wg_key_t *k);
void wg_key_b64(const wg_key_t *k, char out[WG_KEY_B64_LEN]);
/* Standard base64 of exactly 32 bytes (44 characters, one '='); -EINVAL
 * for anything else. */
int wg_key_from_b64(const char *b64, wg_key_t *k);

/* ---- uapi.c ---- */

/* One peer as wireguard-go reports it (get=1). */
typedef struct wg_uapi_peer {
	wg_key_t pub;
	int64_t last_handshake_sec;
	int64_t rx_bytes, tx_bytes;
	char endpoint[64];
} wg_uapi_peer_t;

typedef struct wg_uapi_state {
	uint16_t listen_port;
	bool has_private_key;
	wg_uapi_peer_t *peers;
	size_t n_peers;
} wg_uapi_state_t;

/* Sends one set=1 request (body: the lines after "set=1", each ending in
 * '\n'; the empty line is added) to the socket at path and reads the
 * errno line. timeout_ms bounds the whole exchange. The body may hold a
 * private key: it is wiped from the buffers this function owns. */
int wg_uapi_set(const char *path, const char *body, int timeout_ms, hutch_err_t *err);
/* get=1: the device's port and its peers. */
int wg_uapi_get(const char *path, int timeout_ms, wg_uapi_state_t *st, hutch_err_t *err);
void wg_uapi_state_free(wg_uapi_state_t *st);
/* Parses a get=1 answer (untrusted in the sense that it comes from another
 * process: every line is checked). Exposed for the fuzz harness. */
int wg_uapi_parse(const char *text, size_t len, wg_uapi_state_t *st, hutch_err_t *err);

/* ---- link.c ---- */

/* Opens a TUN device named name in the calling thread's namespace with
 * flags (IFF_TUN | IFF_NO_PI, and IFF_VNET_HDR when wireguard-go speaks
 * it), and brings it up. Returns the fd in *fd and the index in *ifindex. */
int wg_tun_open(const char *name, short flags, int *fd, int *ifindex, hutch_err_t *err);
/* The flags of the TUN device name, from /sys/class/net/<name>/tun_flags. */
int wg_tun_flags(const char *name, short *flags, hutch_err_t *err);
/* Moves the interface ifindex of the calling thread's namespace into the
 * namespace netns_fd, renaming it to new_name on the way. */
int wg_link_move(int ifindex, int netns_fd, const char *new_name, hutch_err_t *err);

/* What a member's interface looks like inside the sandbox. */
typedef struct wg_link_plan {
	const char *ifname;       /* "wg0" */
	const char *alias;        /* the tunnel's name, for `ip link` readers */
	uint8_t addr[4];
	unsigned plen;            /* the tunnel's subnet */
	const uint8_t (*routes)[5]; /* extra routes: 4 bytes of prefix + length */
	size_t n_routes;
} wg_link_plan_t;

/* In the calling thread's namespace: address, alias, up, routes. */
int wg_link_configure(const wg_link_plan_t *plan, hutch_err_t *err);
/* Runs fn(arg) on a short-lived thread inside the namespace at path. */
int wg_in_netns(const char *path, int (*fn)(void *arg, hutch_err_t *err), void *arg,
		hutch_err_t *err);
/* Adds or removes the route to dst/plen via ifindex, in the calling
 * thread's namespace (removing one that is not there succeeds). */
int wg_route(int ifindex, const uint8_t dst[4], unsigned plen, bool add);
/* A namespace of the plugin's own, pinned at path, lo up, forwarding on. */
int wg_netns_create(const char *path, hutch_err_t *err);
void wg_netns_remove(const char *path);
/* Whether the kernel has WireGuard (a device of kind "wireguard" can be
 * made); the device made to find out is removed at once. */
bool wg_kernel_probe(void);
/* IFF_VNET_HDR from <linux/if_tun.h>, without its include here. */
#define WG_IFF_VNET_HDR 0x4000
/* The index of ifname in the namespace at path; 0 when there is none. */
int wg_link_index_in(const char *netns_path, const char *ifname);

/* ---- wggo.c: the userspace backend ---- */

typedef struct wg_instance wg_instance_t;

/* A running wireguard-go with its device. */
typedef struct wg_proc {
	char host_name[16];   /* device name at birth, and the UAPI socket's */
	char sock_path[108];
	pid_t pid;
	int pidfd;            /* -1 when adopted without one */
	uint16_t port;        /* its UDP port, in the host's namespace */
} wg_proc_t;

/* At init: checks that wireguard-go runs, and learns which TUN flags it
 * uses (IFF_VNET_HDR or not) from a device it makes itself. */
int wg_go_probe(wg_instance_t *in, hutch_err_t *err);
/* Starts wireguard-go on a new device in the host's namespace, configures
 * its private key (body: more set lines, e.g. peers) and waits until it
 * listens, on port (0: any). On return the device is ready to be moved
 * (ifindex). */
int wg_go_start(wg_instance_t *in, const wg_key_t *priv, const char *body, uint16_t port,
		wg_proc_t *p, int *ifindex, hutch_err_t *err);
/* Stops it (SIGTERM, then SIGKILL) and waits until it is gone; removes its
 * socket. Safe on a proc that never started or already ended. */
void wg_go_stop(wg_instance_t *in, wg_proc_t *p);
/* Whether p's process is still the wireguard-go on p's socket. */
bool wg_go_alive(const wg_proc_t *p);
/* After a restart: takes p (read from state) over when its process still
 * runs; false when it is gone. */
bool wg_go_adopt(wg_proc_t *p);

/* ---- tunnel.c ---- */

typedef struct wg_tunnel wg_tunnel_t;
typedef struct wg_sandbox wg_sandbox_t;

/* A sandbox's place in one tunnel. */
typedef struct wg_member {
	wg_tunnel_t *tunnel;
	wg_sandbox_t *sandbox;
	char ifname[16];      /* inside the sandbox */
	uint32_t host;        /* host number in the subnet: 2.. */
	uint8_t addr[4];
	wg_key_t pub;         /* the private key lives only in wireguard-go */
	wg_proc_t proc;
	int64_t joined_unix;
} wg_member_t;

/* An external peer of a tunnel: a WireGuard device somewhere else that
 * talks to the tunnel's gateway. It gets an address of the subnet; the
 * networks behind it are its other allowed IPs. */
typedef struct wg_peer {
	char name[WG_NAME_MAX + 1];
	wg_key_t pub;
	char endpoint[80];    /* "a.b.c.d:port", "[v6]:port" or "" */
	uint32_t host;
	uint8_t addr[4];
	uint8_t nets[WG_MAX_PEER_NETS][5]; /* prefix and length */
	size_t n_nets;
} wg_peer_t;

/* A tunnel's gateway: one wireguard-go with a stable key, its device in a
 * namespace of its own (host 1 of the subnet), routing between the
 * external peers and the members. Runs while the tunnel has peers. */
typedef struct wg_gateway {
	bool running;
	wg_proc_t proc;
	wg_key_t pub;
	char netns_path[256];
	uint16_t port;
} wg_gateway_t;

struct wg_tunnel {
	char tenant[128];
	char name[WG_NAME_MAX + 1];
	uint8_t net[4];
	unsigned plen;
	uint32_t index;       /* which subnet of the pool */
	uint8_t *used;        /* host numbers in use (bitmap) */
	uint32_t n_hosts;
	uint32_t cursor;
	wg_member_t **members;
	size_t n_members;
	wg_peer_t peers[WG_MAX_PEERS];
	size_t n_peers;
	wg_gateway_t gw;
	bool explicit_;       /* created by the API: outlives its members */
	int pending;          /* joins and leaves under way (instance lock) */
	pthread_mutex_t lock; /* over members and their peers */
};

struct wg_sandbox {
	char id[128];
	char tenant[128];
	char name[128];       /* the user's, may be "" */
	char netns_path[256];
	wg_member_t *members[WG_MAX_TUNNELS_PER_SANDBOX];
	size_t n_members;
};

struct wg_instance {
	const hutch_host_t *host;
	const wg_config_t *cfg;
	uint8_t pool_net[4];
	unsigned pool_plen;
	uint32_t n_subnets;
	uint8_t *subnet_used; /* bitmap of n_subnets */
	short tun_flags;      /* from the probe */
	char go_version[64];
	bool kernel_wireguard; /* the probe found the kernel module */
	char *state_dir;      /* the run dir: members, sandboxes, gateways' namespaces */
	char *persist_dir;    /* the state dir: tunnels, peers, gateway keys */
	pthread_mutex_t lock; /* over the registries below */
	pthread_mutex_t names_lock; /* innermost: member lists change under it (names.c) */
	wg_sandbox_t **sandboxes;
	size_t n_sandboxes;
	wg_tunnel_t **tunnels;
	size_t n_tunnels;
};

/* A tunnel's name: 1-63 of [a-z0-9-], not starting or ending in '-'. */
bool wg_name_ok(const char *name);
/* Finds (tenant, name), making it (with the next free subnet, or subnet
 * if not NULL) when create. Instance lock held by the caller. */
int wg_tunnel_get(wg_instance_t *in, const char *tenant, const char *name, bool create,
		  wg_tunnel_t **out, hutch_err_t *err);
/* Frees the tunnel when nothing keeps it (no member, not explicit).
 * Instance lock held. */
void wg_tunnel_maybe_free(wg_instance_t *in, wg_tunnel_t *t);
int wg_tunnel_host_alloc(wg_tunnel_t *t, uint32_t *host, hutch_err_t *err);
bool wg_tunnel_host_reserve(wg_tunnel_t *t, uint32_t host);
void wg_tunnel_host_release(wg_tunnel_t *t, uint32_t host);
void wg_tunnel_addr(const wg_tunnel_t *t, uint32_t host, uint8_t out[4]);
/* Subnet index i of the pool (instance), or reserve one (recovery). */
bool wg_subnet_reserve(wg_instance_t *in, uint32_t index);
void wg_subnet_addr(const wg_instance_t *in, uint32_t index, uint8_t out[4]);
void wg_tunnels_free(wg_instance_t *in);
/* Recovery: the tunnel (tenant, name) on subnet index, made if need be;
 * NULL when that subnet is another tunnel's. Instance lock held. */
wg_tunnel_t *wg_tunnel_restore(wg_instance_t *in, const char *tenant, const char *name,
			       uint32_t index);

/* The registry of attached sandboxes (instance lock held). */
wg_sandbox_t *wg_sandbox_find(wg_instance_t *in, const char *id);
wg_sandbox_t *wg_sandbox_add(wg_instance_t *in, const char *id, const char *tenant,
			     const char *netns_path);
void wg_sandbox_remove(wg_instance_t *in, wg_sandbox_t *sb);

/* ---- member.c ---- */

/* Joins sb to tunnel (tenant's), with a new key and the next address; every
 * other member learns the new peer. The address goes to addr_out (CIDR)
 * when not NULL. */
int wg_member_join(wg_instance_t *in, const char *sandbox_id, const char *tunnel,
		   char addr_out[64], hutch_err_t *err);
/* Takes sb out of the tunnel: its process ends (and with it the interface),
 * every other member forgets the peer. -ENOENT when it is not a member. */
int wg_member_leave(wg_instance_t *in, const char *sandbox_id, const char *tunnel,
		    hutch_err_t *err);
/* Every tunnel of sb (detach). */
void wg_member_leave_all(wg_instance_t *in, wg_sandbox_t *sb);
/* The set lines that make m a peer of another member. */
void wg_member_peer_lines(const wg_instance_t *in, const wg_member_t *m, char *buf, size_t cap);

/* ---- inspect.c ---- */

int wg_tunnel_create(wg_instance_t *in, const char *tenant, const hutch_net_tunnel_t *tunnel,
		     hutch_err_t *err);
int wg_tunnel_delete(wg_instance_t *in, const char *tenant, const char *name, hutch_err_t *err);
int wg_tunnel_list(wg_instance_t *in, const char *tenant, const char *name,
		   hutch_net_tunnel_info_cb cb, void *data, hutch_err_t *err);

/* ---- gateway.c (tunnel lock held for all) ---- */

/* Starts t's gateway, with every member and external peer. */
int wg_gateway_start(wg_instance_t *in, wg_tunnel_t *t, hutch_err_t *err);
void wg_gateway_stop(wg_instance_t *in, wg_tunnel_t *t);
/* The gateway learns / forgets member m. */
void wg_gateway_member(wg_instance_t *in, wg_tunnel_t *t, const wg_member_t *m, bool add);
/* Every member's view of the gateway, after the peers changed. */
void wg_gateway_members_update(wg_instance_t *in, wg_tunnel_t *t);
void wg_gateway_key_remove(wg_instance_t *in, const wg_tunnel_t *t);
/* The set lines that make the gateway a member's peer (allowed IPs: its
 * own address, the peers' and their networks). */
void wg_gateway_peer_lines(const wg_instance_t *in, const wg_tunnel_t *t, strbuf_t *b);
/* Adds (or removes) the routes to the peers' networks in a namespace, via
 * ifname. */
int wg_routes_set(const char *netns_path, const char *ifname, const wg_tunnel_t *t, bool add,
		  const wg_peer_t *only, hutch_err_t *err);
/* The gateway's public key, made (and kept under persist_dir) if need be. */
int wg_gateway_key(wg_instance_t *in, wg_tunnel_t *t, wg_key_t *priv_out, hutch_err_t *err);

/* ---- peers.c ---- */

int wg_peer_add(wg_instance_t *in, const char *tenant, const char *tunnel,
		const hutch_net_tunnel_peer_t *peer, hutch_err_t *err);
int wg_peer_remove(wg_instance_t *in, const char *tenant, const char *tunnel, const char *name,
		   hutch_err_t *err);
int wg_peer_config(wg_instance_t *in, const char *tenant, const char *tunnel, const char *name,
		   char *buf, size_t cap, hutch_err_t *err);
/* The set lines that make p a peer of the gateway. */
void wg_peer_lines(const wg_peer_t *p, strbuf_t *b);

/* ---- names.c ---- */

/* Rewrites the names files of t's members (and of also, a sandbox that
 * just left it). */
void wg_names_tunnel_changed(wg_instance_t *in, const wg_tunnel_t *t, const wg_sandbox_t *also);
void wg_names_forget(wg_instance_t *in, const char *sandbox_id);

/* ---- state.c ---- */

/* Writes / removes a persistent tunnel's record (tunnel_create). */
int wg_state_tunnel_save(wg_instance_t *in, const wg_tunnel_t *t, hutch_err_t *err);
void wg_state_tunnel_remove(wg_instance_t *in, const wg_tunnel_t *t);

/* Writes (or, when it stopped, removes) the record of t's gateway. */
int wg_state_gateway_save(wg_instance_t *in, const wg_tunnel_t *t, hutch_err_t *err);
/* Writes / removes the record of an attached sandbox. */
int wg_state_sandbox_save(wg_instance_t *in, const wg_sandbox_t *sb, hutch_err_t *err);
void wg_state_sandbox_remove(wg_instance_t *in, const char *id);
/* Writes / removes the state of a member (no key: the public one only). */
int wg_state_save(wg_instance_t *in, const wg_member_t *m, hutch_err_t *err);
void wg_state_remove(wg_instance_t *in, const wg_member_t *m);
/* At init: members whose wireguard-go still runs are taken back, with their
 * tunnels; the state of the others is removed (and their peers forgotten
 * by the members that remain). */
void wg_state_load_all(wg_instance_t *in);

#endif
