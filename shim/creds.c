/*
 * Family thread, credentials: setuid and its kin change the credentials of every thread of
 * the process, as POSIX wants. Linux keeps them per OS thread, so glibc makes the call on
 * each: it marks every thread it knows (in the struct pthread of each), signals each with
 * SIGSETXID, and waits until each handler has made the call and cleared the mark of the
 * thread it runs on, THREAD_SELF. Under coop the thread pointer is most of the time a
 * greenlet's area, which glibc does not know:
 *  - its handler would clear the mark of that area, never the one glibc waits on, and glibc
 *    would signal that thread again for ever; so the handler runs on the control block glibc
 *    knows the OS thread by (on_setxid);
 *  - the caller's own record is the one glibc skips, making the call itself instead: the
 *    main greenlet's, the initial thread's record, names the OS thread 0 wherever the
 *    main greenlet runs, which would never be signalled; so the calls run on the hub's own
 *    area (set_ids), whose record glibc either knows as the calling thread's (a hub of the
 *    runtime's) or not at all (hub 0's: then the initial thread's record is signalled, and
 *    names the OS thread 0).
 */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/sys.h"
#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

#define SIGSETXID (__SIGRTMIN + 1)        /* glibc's, below what SIGRTMIN gives programs */

/* The kernel's struct sigaction (rt_sigaction): glibc refuses its own signals. */
struct kernel_action {
    void (*handler)(int, siginfo_t *, void *);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static void (*glibc_setxid)(int, siginfo_t *, void *);

struct setxid_args { int sig; siginfo_t *info; void *context; };

static long call_glibc_setxid(void *p)
{
    struct setxid_args *a = p;
    glibc_setxid(a->sig, a->info, a->context);
    return 0;
}

static void on_setxid(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    struct setxid_args a = { sig, info, context };
    coop_tls_run_as_thread(call_glibc_setxid, &a);
    errno = saved;
}

/* glibc installs its handler with its first real thread (the runtime's first): from then
 * on, coop's runs it. Idempotent; a caller that finds another installing it waits, so that
 * no broadcast it starts next meets glibc's handler alone. */
void shim_creds_wrap_setxid(void)
{
    enum { NOT_YET, INSTALLING, WRAPPED };
    static _Atomic int state;
    int seen = atomic_load(&state);
    while (seen == INSTALLING)
        seen = atomic_load(&state);
    struct kernel_action glibc;
    if (seen == WRAPPED || coop_sys6(SYS_rt_sigaction, SIGSETXID, 0, (long)&glibc, sizeof glibc.mask, 0, 0) != 0
        || (uintptr_t)glibc.handler <= (uintptr_t)SIG_IGN)     /* not installed yet */
        return;
    if (!atomic_compare_exchange_strong(&state, &seen, INSTALLING)) {
        while (atomic_load(&state) == INSTALLING)
            ;
        return;
    }
    glibc_setxid = glibc.handler;
    struct kernel_action ours = glibc;
    ours.handler = on_setxid;
    coop_sys6(SYS_rt_sigaction, SIGSETXID, (long)&ours, 0, sizeof ours.mask, 0, 0);
    atomic_store(&state, WRAPPED);
}

enum id_call { SETUID, SETGID, SETEUID, SETEGID, SETREUID, SETREGID, SETRESUID, SETRESGID, SETGROUPS };

struct id_args {
    enum id_call call;
    unsigned a, b, c;
    size_t groups;
    const gid_t *list;
    int result, err;
};

static long call_glibc_id(void *p)
{
    struct id_args *x = p;
    switch (x->call) {
    case SETUID: x->result = REAL(setuid)(x->a); break;
    case SETGID: x->result = REAL(setgid)(x->a); break;
    case SETEUID: x->result = REAL(seteuid)(x->a); break;
    case SETEGID: x->result = REAL(setegid)(x->a); break;
    case SETREUID: x->result = REAL(setreuid)(x->a, x->b); break;
    case SETREGID: x->result = REAL(setregid)(x->a, x->b); break;
    case SETRESUID: x->result = REAL(setresuid)(x->a, x->b, x->c); break;
    case SETRESGID: x->result = REAL(setresgid)(x->a, x->b, x->c); break;
    case SETGROUPS: x->result = REAL(setgroups)(x->groups, x->list); break;
    }
    x->err = errno;
    return 0;
}

/* Before the runtime's threads start (or again in a forked child) one OS thread runs the
 * program, whose record glibc knows as the caller's: the plain call. */
static int set_ids(struct id_args x)
{
    shim_creds_wrap_setxid();
    if (coop_sched_started())
        coop_tls_run_on_hub_area(call_glibc_id, &x);
    else
        call_glibc_id(&x);
    if (x.result != 0)
        errno = x.err;
    return x.result;
}

EXPORT int setuid(uid_t uid) { return set_ids((struct id_args){ .call = SETUID, .a = uid }); }
EXPORT int setgid(gid_t gid) { return set_ids((struct id_args){ .call = SETGID, .a = gid }); }
EXPORT int seteuid(uid_t uid) { return set_ids((struct id_args){ .call = SETEUID, .a = uid }); }
EXPORT int setegid(gid_t gid) { return set_ids((struct id_args){ .call = SETEGID, .a = gid }); }
EXPORT int setreuid(uid_t r, uid_t e) { return set_ids((struct id_args){ .call = SETREUID, .a = r, .b = e }); }
EXPORT int setregid(gid_t r, gid_t e) { return set_ids((struct id_args){ .call = SETREGID, .a = r, .b = e }); }

EXPORT int setresuid(uid_t r, uid_t e, uid_t s)
{
    return set_ids((struct id_args){ .call = SETRESUID, .a = r, .b = e, .c = s });
}

EXPORT int setresgid(gid_t r, gid_t e, gid_t s)
{
    return set_ids((struct id_args){ .call = SETRESGID, .a = r, .b = e, .c = s });
}

EXPORT int setgroups(size_t n, const gid_t *list)
{
    return set_ids((struct id_args){ .call = SETGROUPS, .groups = n, .list = list });
}

/* glibc's initgroups calls its own setgroups, which coop's never sees: the same
 * list (the user's groups and `group`, at most NGROUPS_MAX), through coop's. */
EXPORT int initgroups(const char *user, gid_t group)
{
    int n = 64;
    gid_t *list = NULL;
    for (;;) {
        gid_t *grown = realloc(list, (size_t)n * sizeof *list);
        if (grown == NULL) {
            free(list);
            errno = ENOMEM;
            return -1;
        }
        list = grown;
        int room = n;
        if (getgrouplist(user, group, list, &n) >= 0)
            break;
        if (n <= room)
            n = room * 2;
    }
    long max = sysconf(_SC_NGROUPS_MAX);
    int result = setgroups(max > 0 && n > max ? (size_t)max : (size_t)n, list);
    int err = errno;
    free(list);
    errno = err;
    return result;
}
