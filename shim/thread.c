/*
 * Family thread, lifecycle: pthread_create makes a greenlet on the caller's hub, and a
 * pthread_t is the greenlet's address. Every call that takes a pthread_t tells coop's
 * from glibc's (threads coop did not create keep working), and a released greenlet's from
 * both: glibc answers for a thread it has reclaimed (joined, or ended detached) as if gone,
 * and coop's record must never reach glibc as a descriptor.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#include "shim.h"
#include "../core/sys.h"

#define EXPORT __attribute__((visibility("default")))

static size_t glibc_default_stack;

/* The name of the calling OS thread (the kernel's comm). */
static void os_thread_name(char name[16])
{
    memset(name, 0, 16);
    REAL(prctl)(PR_GET_NAME, name, 0UL, 0UL, 0UL);
}

/* Names pass through OS threads' (prctl below), and the process's is its first OS thread's:
 * one at a time, with signals blocked (a handler could take the lock again, or park and
 * resume on another hub), so that the process never shows a thread's name meanwhile and a
 * rename of the main thread is never put back. */
static coop_lock_t os_names;

static void os_names_lock(sigset_t *old)
{
    coop_block_all_signals(old);
    coop_lock(&os_names);
}

static void os_names_unlock(const sigset_t *old)
{
    coop_unlock(&os_names);
    coop_restore_signals(old);
}

/* Another thread may have held it at the fork: it is not in the child. */
static void os_names_fork_child(void) { os_names = (coop_lock_t){ 0 }; }

/* The main thread's name is the process's too (ps, pkill, /proc/PID/comm), as natively:
 * the name of the OS thread whose tid is the pid, whichever runs the main greenlet now.
 * From another OS thread it goes through /proc, which a process that dropped privileges
 * (no longer dumpable) or that is at its fd limit cannot write: the name stays then. Under
 * os_names. */
static void name_process(struct coop_greenlet *g, const char *name)
{
    if (!coop_greenlet_leads_process(g))
        return;
    long pid = coop_sys(SYS_getpid, 0, 0, 0);
    if (coop_sys(SYS_gettid, 0, 0, 0) == pid) {
        REAL(prctl)(PR_SET_NAME, name, 0UL, 0UL, 0UL);
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", pid);
    int fd = (int)coop_sys6(SYS_openat, AT_FDCWD, (long)path, O_WRONLY | O_CLOEXEC, 0, 0, 0);
    if (fd >= 0) {
        coop_sys(SYS_write, fd, name, strlen(name));
        coop_sys(SYS_close, fd, 0, 0);
    }
}

void shim_thread_init(void)
{
    pthread_attr_t attr;
    if (pthread_getattr_default_np(&attr) == 0) {
        pthread_attr_getstacksize(&attr, &glibc_default_stack);
        pthread_attr_destroy(&attr);
    }
    pthread_atfork(NULL, NULL, os_names_fork_child);
    struct coop_greenlet *self = coop_self();
    if (self != NULL) {
        char name[16];
        os_thread_name(name);
        coop_greenlet_inherit_name(self, name);
    }
}

struct coop_greenlet *shim_greenlet_of(pthread_t t)
{
    return coop_is_greenlet((void *)t) ? (struct coop_greenlet *)t : NULL;
}

bool shim_greenlet_gone(pthread_t t) { return coop_greenlet_gone((void *)t); }

/* glibc keeps "a stack was supplied" and "a size was chosen" only inside the attribute
 * object: struct pthread_attr { sched_param; int policy; int flags; size_t guardsize;
 * void *stackaddr; size_t stacksize (0: the default); ... }, ATTR_FLAG_STACKADDR 8. */
static bool has_own_stack(const pthread_attr_t *attr) { return ((const int *)attr)[2] & 0x8; }
static bool has_own_size(const pthread_attr_t *attr) { return ((const size_t *)attr)[4] != 0; }

static void spawn_attr(const pthread_attr_t *attr, struct coop_spawn_attr *sa)
{
    *sa = (struct coop_spawn_attr){ .guard_size = 4096 };
    if (attr == NULL)
        return;
    int detach;
    pthread_attr_getdetachstate(attr, &detach);
    sa->detached = detach == PTHREAD_CREATE_DETACHED;
    pthread_attr_getguardsize(attr, &sa->guard_size);
    if (has_own_stack(attr)) {
        pthread_attr_getstack(attr, &sa->stack, &sa->stack_size);
    } else {
        size_t size;
        pthread_attr_getstacksize(attr, &size);
        if (has_own_size(attr) || size != glibc_default_stack)   /* the program's, or its default */
            sa->stack_size = size;
    }
}

struct creation { pthread_t *t; struct coop_sched sched; sigset_t mask; bool own_mask; };

/* What a new thread has before it runs, as glibc's pthread_create gives it: its handle in
 * *t, its scheduling attributes, its signal state (the attributes' mask, or the creator's)
 * and, as the kernel gives a new thread, its creator's name. */
static void prepare(struct coop_greenlet *g, void *arg)
{
    struct creation *c = arg;
    struct coop_greenlet *creator = coop_self();
    char name[16];
    if (creator != NULL)
        coop_greenlet_inherit_name(g, coop_greenlet_name(creator));
    else {
        os_thread_name(name);
        coop_greenlet_inherit_name(g, name);
    }
    *coop_greenlet_sched(g) = c->sched;
    shim_signal_thread_created(g, c->own_mask ? &c->mask : NULL);
    *c->t = (pthread_t)g;
}

EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (!shim_patched[FAM_thread])
        return REAL(pthread_create)(t, attr, fn, arg);
    struct coop_spawn_attr sa;
    spawn_attr(attr, &sa);
    coop_diag_prepare();
    struct creation c = { .t = t };
    c.own_mask = attr != NULL && pthread_attr_getsigmask_np(attr, &c.mask) == 0;
    int err = shim_sched_for_new(attr, &c.sched);
    if (err != 0)
        return err;
    sa.prepare = prepare;
    sa.prepare_arg = &c;

    struct coop_greenlet *g;
    err = coop_spawn(&g, fn, arg, &sa);
    if (err != 0)
        shim_sched_drop(&c.sched);
    if (err == ENOSYS)
        return REAL(pthread_create)(t, attr, fn, arg);
    /* glibc clears this at the first pthread_create; libstdc++ and others skip
     * synchronisation while it is set, and a preempted greenlet may be in the middle of
     * what they skip. Cleared after coop_spawn, which may start coop's monitor: glibc's own
     * first pthread_create then sees it set and runs its late initialisation, which
     * installs the handler of the signal setuid() sends every thread (a runtime thread
     * without it dies of that signal). Starting the runtime's threads (the monitor, the
     * other hubs) cleared it already; with one hub, the new greenlet runs only after this
     * one yields. */
    __libc_single_threaded = 0;
    shim_creds_wrap_setxid();
    return err;
}

/* A cancellation point: a joiner woken to act on its cancellation leaves g joinable. */
static int join(struct coop_greenlet *g, void **result, int64_t deadline)
{
    int err;
    do
        shim_cancel_point();
    while ((err = coop_join(g, result, deadline)) == EINTR);
    return err;
}

EXPORT int pthread_join(pthread_t t, void **result)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_join)(t, result);
    return join(g, result, COOP_NO_DEADLINE);
}

/* glibc's try-join says EBUSY for a reclaimed thread: its descriptor's tid is not 0. */
EXPORT int pthread_tryjoin_np(pthread_t t, void **result)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? EBUSY : REAL(pthread_tryjoin_np)(t, result);
    return coop_join(g, result, 0);
}

EXPORT int pthread_clockjoin_np(pthread_t t, void **result, clockid_t clock, const struct timespec *abstime)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_clockjoin_np)(t, result, clock, abstime);
    if (abstime == NULL)
        return join(g, result, COOP_NO_DEADLINE);
    int64_t deadline;
    int err = shim_abs_deadline(clock, abstime, &deadline);
    return err != 0 ? err : join(g, result, deadline);
}

EXPORT int pthread_timedjoin_np(pthread_t t, void **result, const struct timespec *abstime)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_timedjoin_np)(t, result, abstime);
    return pthread_clockjoin_np(t, result, CLOCK_REALTIME, abstime);
}

EXPORT int pthread_detach(pthread_t t)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_detach)(t);
    return coop_detach(g);
}

EXPORT pthread_t pthread_self(void)
{
    coop_preempt_point();
    struct coop_greenlet *g = shim_patched[FAM_thread] ? coop_self() : NULL;
    return g ? (pthread_t)g : REAL(pthread_self)();
}

EXPORT int pthread_equal(pthread_t a, pthread_t b)
{
    coop_preempt_point();
    return a == b;
}

EXPORT int pthread_setname_np(pthread_t t, const char *name)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_setname_np)(t, name);
    if (strlen(name) > 15)
        return ERANGE;
    coop_greenlet_set_name(g, name);
    if (coop_greenlet_leads_process(g)) {
        sigset_t old;
        os_names_lock(&old);
        name_process(g, name);
        os_names_unlock(&old);
    }
    return 0;
}

/* As glibc, ERANGE first for a buffer under 16 bytes: any name fits in 16, even one the
 * thread sets meanwhile (which may then read half old, half new). */
EXPORT int pthread_getname_np(pthread_t t, char *buf, size_t len)
{
    if (len < 16)
        return ERANGE;
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_getname_np)(t, buf, len);
    strcpy(buf, coop_greenlet_name(g));
    return 0;
}

/* PR_SET_NAME and PR_GET_NAME, how many programs name their threads, name the calling
 * greenlet, not the OS thread that runs it and others. The kernel still reads or writes the
 * caller's buffer (EFAULT, and the cut at 15 bytes, are its own): the name passes through
 * the OS thread's, which is put back (under os_names). Unchecked by ASan: libraries'
 * constructors call it (libcap's), maybe before the ASan runtime has the shadow memory that
 * the reads of its arguments would be checked against (see shim_resolve). */
EXPORT __attribute__((no_sanitize("address"))) int prctl(int option, ...)
{
    va_list ap;
    va_start(ap, option);
    unsigned long arg2 = va_arg(ap, unsigned long), arg3 = va_arg(ap, unsigned long);
    unsigned long arg4 = va_arg(ap, unsigned long), arg5 = va_arg(ap, unsigned long);
    va_end(ap);
    struct coop_greenlet *g = shim_patched[FAM_thread] && !shim_vfork_child ? coop_self() : NULL;
    if (g == NULL || (option != PR_SET_NAME && option != PR_GET_NAME))
        return REAL(prctl)(option, arg2, arg3, arg4, arg5);
    char *user = (char *)arg2;
    if (option == PR_GET_NAME) {
        int r = REAL(prctl)(PR_GET_NAME, user, 0UL, 0UL, 0UL);
        if (r == 0)
            memcpy(user, coop_greenlet_name(g), 16);
        return r;
    }
    char os_name[16], name[16];
    sigset_t old;
    os_names_lock(&old);
    os_thread_name(os_name);
    int r = REAL(prctl)(PR_SET_NAME, user, 0UL, 0UL, 0UL);
    if (r == 0) {
        os_thread_name(name);
        REAL(prctl)(PR_SET_NAME, os_name, 0UL, 0UL, 0UL);
        coop_greenlet_set_name(g, name);
        name_process(g, name);
    }
    os_names_unlock(&old);
    return r;
}

/* Reports the greenlet's own stack (Rust's std reads it on every new thread to place its
 * guard page; a thread's original context reports its OS thread's), scheduling and detach
 * state. */
EXPORT int pthread_getattr_np(pthread_t t, pthread_attr_t *attr)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_getattr_np)(t, attr);
    void *base;
    size_t size;
    coop_greenlet_stack(g, &base, &size);
    if (base == NULL) {
        int err = REAL(pthread_getattr_np)((pthread_t)coop_greenlet_thread_record(g), attr);
        if (err != 0)
            return err;
    } else {
        pthread_attr_init(attr);
        pthread_attr_setstack(attr, base, size);
        pthread_attr_setguardsize(attr, coop_greenlet_guard_size(g));
    }
    pthread_attr_setdetachstate(attr, coop_greenlet_detached(g) ? PTHREAD_CREATE_DETACHED : PTHREAD_CREATE_JOINABLE);
    shim_sched_report(g, attr);
    return 0;
}
