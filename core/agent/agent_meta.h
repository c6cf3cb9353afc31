/*
 * agent_meta.h: the metadata endpoint inside the sandbox
 * (http://169.254.169.254/), as hutch-agent serves it.
 *
 * The agent does not speak HTTP: it accepts connections on
 * 169.254.169.254:80, relays what each client sends to hutchd
 * (AGENT_META_DATA), and writes back what hutchd answers
 * (AGENT_META_REPLY). hutchd parses, checks and decides; it knows which
 * sandbox asks because the bytes come over that sandbox's own agent
 * session, so no request can name another sandbox.
 *
 * The address is local to the sandbox: hutchd's runtime puts it on the
 * namespace's loopback, or, where the sandbox has gVisor's own network
 * stack, lets init add it (meta_prepare, with CAP_NET_ADMIN that init then
 * drops for good).
 */
#ifndef HUTCH_AGENT_META_H
#define HUTCH_AGENT_META_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

/* The agent's queue of frames towards hutchd (agent_main.c). */
extern agent_buf_t g_out;

/* init only, first thing: adds the address to lo if init may, then drops
 * CAP_NET_ADMIN from every set, the bounding set included. */
void meta_prepare(void);
/* AGENT_META_LISTEN: start listening (answers AGENT_META_LISTENING). */
void meta_listen(void);
/* AGENT_META_REPLY for conn. */
void meta_reply(uint32_t conn, const uint8_t *data, size_t n);
/* hutchd went away: listener and connections close. */
void meta_close_all(void);

/* The poll loop: how many pollfds meta may add at most; adding them
 * (returns the count, lowers *timeout for deadlines); handling results. */
size_t meta_max_fds(void);
size_t meta_add_fds(struct pollfd *pfds, int *timeout);
void meta_handle_fds(const struct pollfd *pfds, size_t n);

#endif
