/* AddressSanitizer must be told when execution moves to another stack (make test-asan);
 * in an ordinary build these are empty. */
#ifndef COOP_SANITIZER_H
#define COOP_SANITIZER_H

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sys/mman.h>

/* Finds the runtime's code for coop_from_sanitizer (sanitizer.c). */
void coop_sanitizer_init(void);

/* A new greenlet's TLS area (at tp) takes the sanitizer runtime's block from the creating
 * thread's (at from_tp): ASan's per-thread state must stay the OS thread's. */
void coop_san_inherit_tls(uintptr_t tp, uintptr_t from_tp);

/* Before switching from `from` to `to`; a finished greenlet's fake stack is released. */
static inline void coop_san_leave(struct coop_greenlet *from, struct coop_greenlet *to, void **fake)
{
    __sanitizer_start_switch_fiber(from->state == G_FINISHED ? NULL : fake,
                                   to->stack.base ? to->stack.base : to->san_bottom,
                                   to->stack.base ? to->stack.size : to->san_size);
}

/* On arriving from `from`: a thread's original stack is learnt the first time it is left. */
static inline void coop_san_arrive(void *fake, struct coop_greenlet *from)
{
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    if (from != NULL && from->stack.base == NULL && from->san_size == 0) {
        from->san_bottom = (void *)bottom;
        from->san_size = size;
    }
}

/* A stack comes back from a greenlet that never returned: its frames' redzones are still
 * poisoned. The whole pages of its shadow are dropped rather than written (the kernel
 * zero-fills them): unpoisoning a 1 GiB stack would write 128 MiB. */
static inline void coop_san_fresh_stack(void *base, size_t size)
{
    const uintptr_t page = 4096;
    size_t scale, offset;
    __asan_get_shadow_mapping(&scale, &offset);
    uintptr_t start = (uintptr_t)base, end = start + size;
    uintptr_t lo = ((start >> scale) + offset + page - 1) & ~(page - 1);
    uintptr_t hi = ((end >> scale) + offset) & ~(page - 1);
    if (hi <= lo) {
        __asan_unpoison_memory_region(base, size);
        return;
    }
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
    uintptr_t middle_start = (lo - offset) << scale, middle_end = (hi - offset) << scale;
    __asan_unpoison_memory_region(base, middle_start - start);
    __asan_unpoison_memory_region((void *)middle_end, end - middle_end);
}
#else
static inline void coop_sanitizer_init(void) {}
static inline void coop_san_inherit_tls(uintptr_t tp, uintptr_t from_tp) { (void)tp, (void)from_tp; }
static inline void coop_san_fresh_stack(void *base, size_t size) { (void)base, (void)size; }
static inline void coop_san_leave
(struct coop_greenlet *from, struct coop_greenlet *to, void **fake)
{
    (void)from, (void)to, (void)fake;
}
static inline void coop_san_arrive(void *fake, struct coop_greenlet *from) { (void)fake, (void)from; }
#endif

#endif
