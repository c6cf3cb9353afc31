/*
 * names.h: the names users give things (sandboxes, policies, secrets,
 * integrations) and environment variable keys, checked the same way
 * everywhere they are accepted.
 */
#ifndef HUTCH_NAMES_H
#define HUTCH_NAMES_H

#include <stdbool.h>

/* 1-63 characters of ASCII letters, digits, '-', '_', '.'; NULL is not. */
bool object_name_valid(const char *s);

/* An environment variable's key as shells take it: ASCII letters, digits
 * and '_', not starting with a digit, 1-255 characters; NULL is not. */
bool env_key_valid(const char *k);

#endif
