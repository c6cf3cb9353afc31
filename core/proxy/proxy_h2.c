/*
 * proxy_h2.c: a downstream HTTP/2 connection (placeholder until the
 * nghttp2 server side lands): closes the connection.
 */
#include "proxy_priv.h"

void proxy_h2_start(proxy_engine_t *eng, proxy_sock_t *sock, const char *peer,
		    const uint8_t *first, size_t n)
{
	sock->ops->close(sock);
}
