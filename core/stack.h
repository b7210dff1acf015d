/* Greenlet stacks: mmap'd, lazily backed, with a guard page below each. */
#ifndef COOP_STACK_H
#define COOP_STACK_H

#include <stdbool.h>
#include <stddef.h>

struct coop_stack {
    char *base;      /* lowest usable byte; the guard lies just below */
    size_t size;     /* usable bytes */
    size_t guard;    /* bytes of guard below base (0: none) */
    bool pooled;     /* carved from a shared arena of default-sized stacks */
    bool foreign;    /* supplied by the program (pthread_attr_setstack): never freed */
    unsigned valgrind_id;
};

/* Sets the size of pooled stacks; called once at start-up. */
void coop_stack_configure(size_t default_size);
size_t coop_stack_default_size(void);

/* Returns 0, or ENOMEM when neither memory nor mappings are left. */
int coop_stack_alloc(struct coop_stack *s, size_t size, size_t guard);
void coop_stack_free(struct coop_stack *s);

/* Whether addr falls in the guard of a stack this module handed out (for overflow reports). */
bool coop_stack_in_guard(const struct coop_stack *s, const void *addr);

/* Whether addr lies in the pool's arenas (never unmapped). */
bool coop_stack_in_pool(const void *addr);

/* Whether guards cost no memory mapping (MADV_GUARD_INSTALL, Linux 6.13+). */
bool coop_stack_light_guards(void);

void coop_stack_fork_child(void);

#endif
