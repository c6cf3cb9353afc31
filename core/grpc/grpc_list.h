/*
 * grpc_list.h: an intrusive circular doubly linked list.
 *
 * hutch_grpc keeps calls on their connection, connections on their server
 * and messages on their call; all of those come and go in any order, which
 * an intrusive list handles in O(1) without allocating. A removed link points
 * at itself, so grpc_link_linked() tells whether an object is on a list.
 */
#ifndef HUTCH_GRPC_LIST_H
#define HUTCH_GRPC_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct grpc_link {
	struct grpc_link *prev, *next;
};

static inline void grpc_list_init(struct grpc_link *l)
{
	l->prev = l->next = l;
}

static inline bool grpc_list_empty(const struct grpc_link *head)
{
	return head->next == head;
}

static inline bool grpc_link_linked(const struct grpc_link *l)
{
	return l->next != l;
}

static inline void grpc_list_add_tail(struct grpc_link *head, struct grpc_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static inline void grpc_list_del(struct grpc_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

/* Removes and returns the first link, or NULL when the list is empty. */
static inline struct grpc_link *grpc_list_pop(struct grpc_link *head)
{
	if (grpc_list_empty(head))
		return NULL;
	struct grpc_link *l = head->next;
	grpc_list_del(l);
	return l;
}

#define grpc_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
