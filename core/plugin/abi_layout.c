/*
 * abi_layout.c: compiles abi_layout.def against today's <hutch/plugin.h>, so
 * that moving, resizing or removing a member of any minor, or growing a
 * struct without recording the new minor, fails hutchd's build rather than
 * the plugins that were built against an older header. Nothing here runs.
 *
 * The numbers are for LP64 (x86-64, arm64), where hutch is built and its
 * plugins are; on another data model the layouts are not checked.
 */
#include <stddef.h>

#include <hutch/plugin.h>

#if defined(__LP64__)
#define MEMBER_AT(type, member, off, n)                                        \
	_Static_assert(offsetof(type, member) == (off) &&                      \
			       sizeof(((type *)0)->member) == (n),             \
		       #type "." #member " moved or changed size");
#define SIZE_IS(type, expr, n)                                                 \
	_Static_assert((expr) == (n), #type ": size of a released minor changed");
#define ABI_1_0_MEMBER MEMBER_AT
#define ABI_1_1_MEMBER MEMBER_AT
#define ABI_1_2_MEMBER MEMBER_AT
#define ABI_1_0_SIZE SIZE_IS
#define ABI_1_1_SIZE SIZE_IS
#define ABI_1_2_SIZE SIZE_IS
#include "abi_layout.def"
#endif

/* ISO C wants at least one declaration in a translation unit. */
extern const int hutch_abi_layout_checked;
const int hutch_abi_layout_checked = 1;
