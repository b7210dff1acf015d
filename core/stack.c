/*
 * Every stack gets a guard page, but a guard made with mprotect splits the mapping, and two
 * mappings per stack would cap a process at about 32,000 greenlets (vm.max_map_count is
 * 65,530). Where the kernel has MADV_GUARD_INSTALL, guards are page-table markers instead:
 * default-sized stacks are then carved from large arenas, 256 per mapping, which is what
 * lets 100,000 greenlets live in one process. Older kernels fall back to mprotect guards.
 */
#include "stack.h"

#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sys.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(start, end) 0u
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define PAGE 4096UL
#define ARENA_STACKS 256
/* Free pooled stacks beyond this many give their memory back to the kernel. */
#define POOL_KEEP_BACKED 256

static size_t pooled_size = 256 * 1024;   /* usable bytes; guard excluded */
static int light_guards = -1;             /* -1 unknown, then 0 or 1 */

static coop_lock_t pool_lock;
static char **pool_free;                  /* bases of free pooled stacks, newest last */
static size_t pool_free_count, pool_free_cap;
static char *arena_next, *arena_end;
static char **arenas;                     /* every arena's first byte: they are never unmapped */
static size_t arenas_len, arenas_cap;

static size_t round_page(size_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

/* Stacks are never executable, unless the program itself says it needs executable stacks
 * (PT_GNU_STACK with PF_X: GCC's nested functions), as glibc then makes thread stacks. */
static int stack_prot = PROT_READ | PROT_WRITE;

static int find_stack_flags(struct dl_phdr_info *info, size_t size, void *unused)
{
    (void)size;
    (void)unused;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_STACK && (info->dlpi_phdr[i].p_flags & PF_X))
            stack_prot |= PROT_EXEC;
    return 1;    /* the executable only */
}

void coop_stack_configure(size_t default_size)
{
    pooled_size = round_page(default_size);
    dl_iterate_phdr(find_stack_flags, NULL);
}

size_t coop_stack_default_size(void) { return pooled_size; }

static int install_guard(char *guard, size_t len)
{
    if (len == 0)
        return 0;
    if (light_guards != 0) {
        if (madvise(guard, len, MADV_GUARD_INSTALL) == 0) {
            light_guards = 1;
            return 0;
        }
        if (light_guards == 1)
            return errno;
        light_guards = 0;
    }
    return mprotect(guard, len, PROT_NONE) == 0 ? 0 : errno;
}

bool coop_stack_light_guards(void)
{
    if (light_guards < 0) {
        struct coop_stack probe;
        if (coop_stack_alloc(&probe, PAGE, PAGE) == 0)
            coop_stack_free(&probe);
    }
    return light_guards == 1;
}

static char *map(size_t len)
{
    void *p = mmap(NULL, len, stack_prot,

                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static size_t arena_size(void) { return (pooled_size + PAGE) * ARENA_STACKS; }

static bool note_arena(char *arena)
{
    if (arenas_len == arenas_cap) {
        size_t cap = arenas_cap ? arenas_cap * 2 : 16;
        char **grown = realloc(arenas, cap * sizeof *grown);
        if (grown == NULL)
            return false;
        arenas = grown;
        arenas_cap = cap;
    }
    arenas[arenas_len++] = arena;
    return true;
}

/* Carves one stack from the current arena, mapping a new arena when it is used up. */
static char *carve_pooled(void)
{
    size_t slot = pooled_size + PAGE;
    if (arena_next == arena_end) {
        char *arena = map(arena_size());
        if (arena == NULL)
            return NULL;
        if (!note_arena(arena)) {
            munmap(arena, arena_size());
            return NULL;
        }
        arena_next = arena;
        arena_end = arena + slot * ARENA_STACKS;
    }
    char *guard = arena_next;
    if (install_guard(guard, PAGE) != 0)
        return NULL;
    arena_next += slot;
    return guard + PAGE;
}

static int alloc_pooled(struct coop_stack *s)
{
    coop_lock(&pool_lock);
    char *base;
    if (pool_free_count > 0) {
        base = pool_free[--pool_free_count];
    } else if (light_guards != 0) {
        base = carve_pooled();
    } else {
        base = NULL;   /* mprotect guards would split the arena: map stacks one by one */
    }
    coop_unlock(&pool_lock);
    if (base == NULL)
        return -1;
    *s = (struct coop_stack){ .base = base, .size = pooled_size, .guard = PAGE, .pooled = true };
    return 0;
}

static int alloc_mapped(struct coop_stack *s, size_t size, size_t guard)
{
    if (size == pooled_size && guard == PAGE && alloc_pooled(s) == 0)
        return 0;
    char *p = map(guard + size);
    if (p == NULL)
        return ENOMEM;
    if (install_guard(p, guard) != 0) {
        munmap(p, guard + size);
        return ENOMEM;
    }
    *s = (struct coop_stack){ .base = p + guard, .size = size, .guard = guard };
    return 0;
}

int coop_stack_alloc(struct coop_stack *s, size_t size, size_t guard)
{
    int err = alloc_mapped(s, round_page(size), round_page(guard));
    if (err == 0)      /* valgrind follows stack switches only into stacks it knows */
        s->valgrind_id = VALGRIND_STACK_REGISTER(s->base, s->base + s->size);
    return err;
}

void coop_stack_free(struct coop_stack *s)
{
    if (s->foreign)
        return;
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);

    if (!s->pooled) {
        munmap(s->base - s->guard, s->guard + s->size);
        return;
    }
    coop_lock(&pool_lock);
    if (pool_free_count == pool_free_cap) {
        size_t cap = pool_free_cap ? pool_free_cap * 2 : 256;
        char **grown = realloc(pool_free, cap * sizeof *grown);
        if (grown == NULL) {      /* cannot keep it: give it back */
            coop_unlock(&pool_lock);
            madvise(s->base, s->size, MADV_DONTNEED);
            return;
        }
        pool_free = grown;
        pool_free_cap = cap;
    }
    /* The most recently used stacks stay warm; older ones give their pages back. */
    if (pool_free_count >= POOL_KEEP_BACKED)
        madvise(pool_free[pool_free_count - POOL_KEEP_BACKED], s->size, MADV_DONTNEED);
    pool_free[pool_free_count++] = s->base;
    coop_unlock(&pool_lock);
}

/* Another hub's thread may have held the pool's lock at the fork. */
void coop_stack_fork_child(void) { pool_lock = (coop_lock_t){ 0 }; }

bool coop_stack_in_pool(const void *addr)
{
    const char *a = addr;
    bool found = false;
    coop_lock(&pool_lock);
    for (size_t i = 0; i < arenas_len && !found; i++)
        found = a >= arenas[i] && a < arenas[i] + arena_size();
    coop_unlock(&pool_lock);
    return found;
}

bool coop_stack_in_guard(const struct coop_stack *s, const void *addr)
{
    const char *a = addr;
    return s->guard > 0 && a >= s->base - s->guard && a < s->base;
}
