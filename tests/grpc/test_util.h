/*
 * test_util.h: helpers for the C tests in tests/grpc: start
 * grpc-echo-server in a private temporary directory, stop it and check that
 * it exited cleanly, make a self-signed certificate, and CHECK macros.
 */
#ifndef HUTCH_TEST_GRPC_UTIL_H
#define HUTCH_TEST_GRPC_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct test_server {
	pid_t pid;
	char dir[64];    /* private temporary directory, removed by stop */
	char sock[128];  /* unix socket path */
	char target[160]; /* "unix:<sock>" */
	int port;        /* TCP port, -1 without --tcp */
	char cert[128], key[128];
};

extern int test_failures;

#define CHECK(cond, ...)                                                               \
	do {                                                                           \
		if (!(cond)) {                                                         \
			test_failures++;                                               \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
		}                                                                      \
	} while (0)

/* Starts server_bin with --unix <dir>/echo.sock plus extra (NULL-ended;
 * the literal "@CERT@"/"@KEY@" are replaced by a fresh self-signed
 * certificate/key for localhost and 127.0.0.1). Waits for its "listening"
 * line. Returns 0 or -1. */
int test_server_start(struct test_server *s, const char *server_bin, const char *const *extra);
/* SIGKILL: the socket file stays behind, as after a crash. */
void test_server_kill(struct test_server *s);
/* Starts the server again on the same socket path (and certificate),
 * after it was stopped with kill. */
int test_server_restart(struct test_server *s, const char *server_bin, const char *const *extra);
/* Runs server_bin with args (NULL-ended) and returns its exit status, or -1
 * if it is still running after timeout_ms (it is then killed). For servers
 * expected to refuse to start. */
int test_run_expect_exit(const char *server_bin, const char *const *args, int timeout_ms);
/* true while the server process is running. */
bool test_server_alive(struct test_server *s);
/* SIGTERM, wait (10 s at most), remove the directory. Returns the exit
 * status (0 = clean shutdown), or -1 if it crashed, hung, or left its
 * socket file behind. */
int test_server_stop(struct test_server *s);

uint64_t test_now_ms(void);
void test_sleep_ms(unsigned ms);

#endif
