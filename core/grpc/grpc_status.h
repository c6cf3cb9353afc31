/*
 * grpc_status.h: the gRPC status codes.
 *
 * Every gRPC call ends with one of these codes in its grpc-status trailer.
 * The numbers are fixed by the gRPC protocol (doc/statuscodes.md) and are the
 * same on every implementation, so they may be stored and compared as ints.
 */
#ifndef HUTCH_GRPC_STATUS_H
#define HUTCH_GRPC_STATUS_H

typedef enum grpc_status {
	GRPC_STATUS_OK = 0,
	GRPC_STATUS_CANCELLED = 1,
	GRPC_STATUS_UNKNOWN = 2,
	GRPC_STATUS_INVALID_ARGUMENT = 3,
	GRPC_STATUS_DEADLINE_EXCEEDED = 4,
	GRPC_STATUS_NOT_FOUND = 5,
	GRPC_STATUS_ALREADY_EXISTS = 6,
	GRPC_STATUS_PERMISSION_DENIED = 7,
	GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
	GRPC_STATUS_FAILED_PRECONDITION = 9,
	GRPC_STATUS_ABORTED = 10,
	GRPC_STATUS_OUT_OF_RANGE = 11,
	GRPC_STATUS_UNIMPLEMENTED = 12,
	GRPC_STATUS_INTERNAL = 13,
	GRPC_STATUS_UNAVAILABLE = 14,
	GRPC_STATUS_DATA_LOSS = 15,
	GRPC_STATUS_UNAUTHENTICATED = 16,
} grpc_status_t;

#define GRPC_STATUS_MAX GRPC_STATUS_UNAUTHENTICATED

/* The canonical upper-case name ("DEADLINE_EXCEEDED"); "UNKNOWN" for a code
 * outside 0..16. The string is static. */
const char *grpc_status_name(int status);

#endif
