/*
 * agent_port.h: PORT_WAIT, the agent telling hutchd once a TCP port inside
 * the sandbox accepts connections (a replica's readiness).
 *
 * hutchd asks once and hears once: the agent tries 127.0.0.1:PORT (where
 * hutchd's port forward connects too) with a non-blocking connect, and
 * answers DONE on the first one that completes, or ERROR(ETIMEDOUT). The
 * attempts stay inside the sandbox, where one costs a few microseconds:
 * every 2 ms for the first second, every 10 ms up to ten seconds, every
 * 50 ms after that, so a server that starts quickly is seen within a few
 * milliseconds and one that takes minutes costs little. No bytes are
 * sent: the server sees a connection that closes at once.
 */
#ifndef HUTCH_AGENT_PORT_H
#define HUTCH_AGENT_PORT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

/* AGENT_PORT_WAIT on stream. */
void port_wait_start(uint32_t stream, const agent_frame_t *f);
/* AGENT_CANCEL: true if stream was a wait (now gone). */
bool port_wait_cancel(uint32_t stream);
/* hutchd went away: every wait ends silently. */
void port_close_all(void);

/* The poll loop, as agent_meta.h's: at most this many pollfds; adding them
 * (starts attempts that are due, lowers *timeout to the next one); handling
 * the results. */
size_t port_max_fds(void);
size_t port_add_fds(struct pollfd *pfds, int *timeout);
void port_handle_fds(const struct pollfd *pfds, size_t n);

#endif
