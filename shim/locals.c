/*
 * Family thread, thread-local data: pthread keys and C++/Rust thread_local destructors.
 * A key's value belongs to the greenlet (CPython keeps each thread's interpreter state
 * in one), or to the OS thread for callers that are no greenlet. Keys always use this
 * implementation, whether thread patching is on or not, so that a key made before coop's
 * constructor ran is the same key after.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))
#define KEYS_MAX PTHREAD_KEYS_MAX
#define DESTRUCTOR_ROUNDS PTHREAD_DESTRUCTOR_ITERATIONS

/* A key is in use while its sequence number is odd; a value is the key's only while the
 * sequence it was stored under is current, so pthread_key_delete forgets all at once. */
static struct {
    _Atomic uint64_t seq;
    void (*destructor)(void *);
} keys[KEYS_MAX];

struct tls_dtor {
    struct tls_dtor *next;
    void (*fn)(void *);
    void *obj;
};

struct locals {
    struct { uint64_t seq; void *value; } *values;
    unsigned len;
    struct tls_dtor *tls_dtors;    /* most recent first, the order they run in */
};

/* The locals come from glibc's own allocator, never from the program's malloc: an allocator
 * that keeps its per-thread state in a pthread key (jemalloc does) sets it while it starts,
 * and a malloc of ours then would start it again inside itself (jemalloc registered its fork
 * handlers twice, and a fork deadlocked in them: varnishd at start-up). */

static __thread struct locals *thread_locals;
static pthread_key_t thread_exit_key;

/* A greenlet's values, or its OS thread's for callers that are none and for the thread's
 * main greenlet, which is the thread's own context and keeps what was set before coop
 * started. */
static struct locals **locals_slot(struct coop_greenlet *g)
{
    return g != NULL && !coop_greenlet_is_main(g) ? (struct locals **)coop_greenlet_slot(g)
                                                  : &thread_locals;
}

/* caller: the return address of the wrapper's caller; the sanitizer runtime's per-thread
 * state stays the OS thread's. */
static struct locals *my_locals(bool create, const void *caller)
{
    struct locals **slot = coop_from_sanitizer(caller) ? coop_os_thread_local(&thread_locals)
                                                       : locals_slot(coop_self());
    if (*slot == NULL && create) {
        *slot = __libc_calloc(1, sizeof **slot);
        if (*slot != NULL && slot == &thread_locals)
            REAL(pthread_setspecific)(thread_exit_key, *slot);   /* for the destructors */
    }
    return *slot;
}

EXPORT int pthread_key_create(pthread_key_t *key, void (*destructor)(void *))
{
    for (unsigned k = 0; k < KEYS_MAX; k++) {
        uint64_t seq = atomic_load(&keys[k].seq);
        if ((seq & 1) == 0 && atomic_compare_exchange_strong(&keys[k].seq, &seq, seq + 1)) {
            keys[k].destructor = destructor;
            *key = k;
            return 0;
        }
    }
    return EAGAIN;
}

EXPORT int pthread_key_delete(pthread_key_t key)
{
    if (key >= KEYS_MAX)
        return EINVAL;
    uint64_t seq = atomic_load(&keys[key].seq);
    if ((seq & 1) == 0 || !atomic_compare_exchange_strong(&keys[key].seq, &seq, seq + 1))
        return EINVAL;
    return 0;
}

EXPORT void *pthread_getspecific(pthread_key_t key)
{
    struct locals *l = my_locals(false, __builtin_return_address(0));
    if (l == NULL || key >= l->len || l->values[key].seq != atomic_load(&keys[key].seq))
        return NULL;
    return l->values[key].value;
}

EXPORT int pthread_setspecific(pthread_key_t key, const void *value)
{
    if (key >= KEYS_MAX || (atomic_load(&keys[key].seq) & 1) == 0)
        return EINVAL;
    struct locals *l = my_locals(true, __builtin_return_address(0));
    if (l == NULL)
        return ENOMEM;
    if (key >= l->len) {
        unsigned len = key < 32 ? 32 : KEYS_MAX;
        void *values = __libc_realloc(l->values, len * sizeof l->values[0]);
        if (values == NULL)
            return ENOMEM;
        l->values = values;
        for (unsigned k = l->len; k < len; k++)
            l->values[k] = (typeof(l->values[k])){ 0, NULL };

        l->len = len;
    }
    l->values[key].seq = atomic_load(&keys[key].seq);
    l->values[key].value = (void *)value;
    return 0;
}

/* Rust's std and C++ register destructors of thread_local objects here. A greenlet's run
 * when it ends; the main thread's and real threads' stay with glibc, which runs them at
 * thread exit and exit(). */
EXPORT int __cxa_thread_atexit_impl(void (*fn)(void *), void *obj, void *dso)
{
    struct coop_greenlet *g = coop_self();
    if (g == NULL || coop_greenlet_is_main(g))
        return REAL(__cxa_thread_atexit_impl)(fn, obj, dso);
    struct locals *l = my_locals(true, NULL);
    struct tls_dtor *d = __libc_malloc(sizeof *d);
    if (l == NULL || d == NULL) {
        __libc_free(d);
        return -1;
    }
    *d = (struct tls_dtor){ l->tls_dtors, fn, obj };
    l->tls_dtors = d;
    return 0;
}

/* What glibc does when a thread ends: thread_local destructors, then key destructors,
 * for as many rounds as values keep being set; then l is freed, unless a thread's original
 * context ends while its OS thread runs on as a hub (keep): the sanitizer runtime's values
 * (its per-thread state) stay, and l with them. */
static void run_destructors(struct locals *l, bool keep)
{
    while (l->tls_dtors != NULL) {
        struct tls_dtor *d = l->tls_dtors;
        l->tls_dtors = d->next;
        d->fn(d->obj);
        __libc_free(d);
    }
    for (int round = 0; round < DESTRUCTOR_ROUNDS; round++) {
        bool ran = false;
        for (unsigned k = 0; k < l->len; k++) {
            void *value = l->values[k].value;
            void (*destructor)(void *) = keys[k].destructor;
            if (value == NULL || l->values[k].seq != atomic_load(&keys[k].seq) || destructor == NULL
                || (keep && coop_from_sanitizer((const void *)destructor)))
                continue;
            l->values[k].value = NULL;
            destructor(value);
            ran = true;
        }
        if (!ran)
            break;
    }
    if (keep)
        return;
    __libc_free(l->values);
    __libc_free(l);
}

void shim_locals_exit(struct coop_greenlet *g)
{
    struct locals **slot = locals_slot(g);
    if (*slot == NULL)
        return;
    if (slot == &thread_locals) {      /* the OS thread runs on: its set stays */
        run_destructors(*slot, true);
        return;
    }
    run_destructors(*slot, false);
    *slot = NULL;
}

static void thread_exit(void *l)
{
    thread_locals = NULL;
    run_destructors(l, false);
}

void shim_locals_init(void)
{
    REAL(pthread_key_create)(&thread_exit_key, thread_exit);
    if (thread_locals != NULL)     /* values set before coop started */
        REAL(pthread_setspecific)(thread_exit_key, thread_locals);
}
