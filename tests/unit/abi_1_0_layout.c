/* Compiles the ABI 1.0 lines of core/plugin/abi_layout.def against the
 * frozen copy of the 1.0 header (tests/unit/abi-1.0): it proves that the
 * numbers the core's build holds today's header to are the ones ABI 1.0
 * really had. The lines of later minors are left out; nothing here runs. */
#include <stddef.h>

#include <hutch/plugin.h>

#if HUTCH_PLUGIN_ABI_MINOR != 0
#error "this file must be built against the frozen ABI 1.0 header"
#endif

#if defined(__LP64__)
#define ABI_1_0_MEMBER(type, member, off, n)                                   \
	_Static_assert(offsetof(type, member) == (off) &&                      \
			       sizeof(((type *)0)->member) == (n),             \
		       #type "." #member ": not where ABI 1.0 had it");
/* In 1.0's own header, its size is simply sizeof. */
#define ABI_1_0_SIZE(type, expr, n)                                            \
	_Static_assert(sizeof(type) == (n), #type ": not ABI 1.0's size");
#define ABI_1_1_MEMBER(type, member, off, n)
#define ABI_1_1_SIZE(type, expr, n)
#define ABI_1_2_MEMBER(type, member, off, n)
#define ABI_1_2_SIZE(type, expr, n)
#include "abi_layout.def"
#endif

extern const int hutch_abi_1_0_layout_checked;
const int hutch_abi_1_0_layout_checked = 1;
