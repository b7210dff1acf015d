/*
 * The loader's locks, which know their owner by tid.
 *
 * dlopen, dlclose, dlsym and dladdr hold ld.so's dl_load_lock, and dl_iterate_phdr its
 * dl_load_write_lock, and both run program code meanwhile (constructors, destructors,
 * the callback). They are glibc's own recursive mutexes, taken without coop, and they
 * know their owner by the tid in the caller's control block, which a greenlet shares with
 * the others its hub runs and which coop_tls_enter rewrites when another hub resumes it
 * (tls.c). A greenlet that waits inside (a constructor that sleeps, reads a pipe, joins a
 * thread) and is resumed by another hub would unlock with that hub's tid: glibc refuses
 * (EPERM, which it ignores), the lock stays held for ever, and the next dlopen of every
 * other OS thread waits for it for ever (tests/samples/loader_waits hung in half its runs
 * on two hubs).
 *
 * So a greenlet counts what it took of these locks: as it arrives on a hub and as it leaves
 * it, on the OS thread that runs it, it reads their recursion counts under its tid, and
 * loader_held grows by the difference (the greenlets that share its tid run on that thread
 * one at a time, and only threads with that tid change the counts it owns: but in the
 * exceptions below, where another OS thread carries the same tid). While loader_held is
 * not zero the greenlet keeps its tid (coop_tls_enter leaves it) and is run by the hub whose
 * OS thread that tid names (coop_sched_pop), as the main greenlet is run by hub 0 (sched.c,
 * with the same exceptions: without preemption or handoff, and while that hub is away, any
 * hub runs it, still under that tid).
 *
 * Not covered: the other greenlets of that hub carry the same tid, so they enter the lock
 * as its owner between the holder's waits instead of waiting for it, and their dlopen may
 * end before the holder's, which glibc never expects of nested calls (natively they would
 * wait). loader_waits does this too; it loads with RTLD_LOCAL, which keeps out of the one
 * such state a review found: the additions to the global scope that an outer dlopen with
 * RTLD_GLOBAL leaves pending for its end.
 *
 * The locks are found in ld.so's _rtld_global (GLIBC_PRIVATE, laid out per glibc
 * version): inside a dl_iterate_phdr callback exactly one recursive mutex there is owned
 * once more, by the caller's tid, than just before: the write lock. glibc declares
 * dl_load_lock right before it (ldsodefs.h), which must look like a recursive mutex too.
 * Where either check fails, nothing is watched (a debug line says so) and the hazard
 * above stays.
 */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { LOADER_LOCKS = 2 };

/* Written once at start-up, before any other thread of the runtime's; read by every hub. */
static const char *loader_locks[LOADER_LOCKS];

/* A field of the pthread_mutex_t at m (which may be any bytes, while probing). */
static int mutex_field(const char *m, size_t offset)
{
    int value;
    memcpy(&value, m + offset, sizeof value);
    return value;
}
#define MUTEX_FIELD(m, name) mutex_field(m, offsetof(struct __pthread_mutex_s, name))

static bool recursive_shape(const char *m)
{
    return (MUTEX_FIELD(m, __kind) & 0x7f) == PTHREAD_MUTEX_RECURSIVE_NP;
}

struct probe {
    const char *global, *before;
    size_t size;
    pid_t tid;
    size_t found_at;
    int matches;
};

static int find_write_lock(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)info;
    (void)size;
    struct probe *p = arg;
    for (size_t at = 0; at + sizeof(pthread_mutex_t) <= p->size; at += _Alignof(pthread_mutex_t)) {
        const char *now = p->global + at, *was = p->before + at;
        if (recursive_shape(now) && MUTEX_FIELD(now, __owner) == p->tid
            && MUTEX_FIELD(now, __count) == MUTEX_FIELD(was, __count) + 1) {
            p->found_at = at;
            p->matches++;
        }
    }
    return 1;       /* one callback is enough */
}

void coop_loader_init(void)
{
    const char *global = dlvsym(RTLD_DEFAULT, "_rtld_global", "GLIBC_PRIVATE");
    Dl_info info;
    const ElfW(Sym) *symbol = NULL;
    if (global == NULL || !dladdr1(global, &info, (void **)&symbol, RTLD_DL_SYMENT) || symbol == NULL) {
        coop_debug("the loader's locks are not watched: _rtld_global not found");
        return;
    }
    struct probe p = { .global = global, .size = symbol->st_size, .tid = coop_tls_own_tid() };
    char *before = malloc(p.size);
    if (before == NULL) {
        coop_debug("the loader's locks are not watched: out of memory");
        return;
    }
    memcpy(before, global, p.size);
    p.before = before;
    dl_iterate_phdr(find_write_lock, &p);
    free(before);
    if (p.matches != 1 || p.found_at < sizeof(pthread_mutex_t)
        || !recursive_shape(global + p.found_at - sizeof(pthread_mutex_t))) {
        coop_debug("the loader's locks are not watched: %d candidates in _rtld_global", p.matches);
        return;
    }
    loader_locks[0] = global + p.found_at - sizeof(pthread_mutex_t);
    loader_locks[1] = global + p.found_at;
}

/* The recursions of the loader's locks held under g's tid. An owner's count changes only on
 * the OS threads with that tid, and so, read here on one of them, is this thread's own but in
 * sched.c's exceptions (then it may be another's, and the read races with its write). */
static int loader_depth(const struct coop_greenlet *g)
{
    int depth = 0;
    for (int i = 0; i < LOADER_LOCKS; i++) {
        const char *m = loader_locks[i];
        if (m == NULL)
            continue;
        const int *owner = (const int *)(m + offsetof(struct __pthread_mutex_s, __owner));
        pid_t tid = __atomic_load_n(owner, __ATOMIC_RELAXED);
        if (tid != 0 && tid == coop_tls_tid(g))
            depth += MUTEX_FIELD(m, __count);
    }
    return depth;
}

void coop_loader_arrive(struct coop_greenlet *g) { g->loader_depth_at_arrival = loader_depth(g); }

/* Kept between 0 and what is held under its tid: where two OS threads carry one tid (sched.c's
 * exceptions), the other may take or let go meanwhile. */
void coop_loader_leave(struct coop_greenlet *g)
{
    int depth = loader_depth(g), held = g->loader_held + depth - g->loader_depth_at_arrival;
    g->loader_held = held < 0 ? 0 : held > depth ? depth : held;
}
