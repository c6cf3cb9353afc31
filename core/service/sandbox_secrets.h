/*
 * sandbox_secrets.h: the secret store as the sandbox manager sees it
 * (sandbox_secret_source_t), the secret references converted to the
 * store's message type on the way.
 */
#ifndef HUTCH_SANDBOX_SECRETS_H
#define HUTCH_SANDBOX_SECRETS_H

#include "sandbox_mgr.h"
#include "secret_store.h"

sandbox_secret_source_t sandbox_secret_source(secrets_t *s);

#endif
