/*
 * grpc_call_priv.h: functions shared by the three files that implement the
 * call (grpc_call.c, grpc_call_in.c, grpc_call_out.c).
 */
#ifndef HUTCH_GRPC_CALL_PRIV_H
#define HUTCH_GRPC_CALL_PRIV_H

#include "grpc_internal.h"

/* Frees queued replies / held requests and any partial request. */
void grpc_call_drop_output(grpc_call_t *call);
void grpc_call_drop_input(grpc_call_t *call);

/* Tells the method the call ended without it (on_cancel), once, and only if
 * the method has seen the call. */
void grpc_call_notify_cancel(grpc_call_t *call, grpc_status_t status);

/* The layer ends the call with status: drops queued data, sends trailers
 * (unless already finished), and notifies the method. */
void grpc_call_fail(grpc_call_t *call, grpc_status_t status, const char *message);

/* Decides the final status and queues the trailers after any queued
 * messages (or a Trailers-Only response if nothing was sent). */
void grpc_call_finish_internal(grpc_call_t *call, grpc_status_t status, const char *message);

/* Arms the grpc-timeout deadline. */
void grpc_call_start_deadline(grpc_call_t *call, uint64_t ms);

/* Hands held messages (and then the half-close) to the method while not
 * paused. */
void grpc_call_deliver(grpc_call_t *call);

#endif
