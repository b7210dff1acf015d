/*
 * build/unit_tests: the core's unit tests, with Check.
 *
 * The process turns its main thread into a hub before running anything, so every test body
 * runs on the hub's main greenlet. Tests run in Check's default mode, CK_FORK: each test is
 * a child of the runner, and the checked setup (util.c) first calls coop_fork_child(), as
 * the shim's fork does, so the child's hub gets an epoll set and a libuv loop of its own
 * instead of sharing the runner's. A crash, a hang (Check's timeout), a leaked greenlet
 * or a stray thread then stays in that child. CK_FORK=no runs them all in this one
 * process instead; the tests pass either way.
 *
 * Environment:
 *   CK_FORK=no                      one process for everything
 *   CK_RUN_SUITE / CK_RUN_CASE      Check's own filters
 *   CK_VERBOSITY=verbose            one line per test
 *   COOP_PREEMPT_MS                 the time slice (default 2: a short one, so that the
 *                                   preemption tests see many preemptions quickly)
 *   COOP_HUBS=N, COOP_TLS=MECHANISM, COOP_HANDOFF_MS=MS as for programs
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

void shim_resolve_all(void);

/* In this binary the libc names are glibc's own: they are the real functions. */
static uintptr_t os_thread_self(void) { return (uintptr_t)pthread_self(); }

/* COOP_TLS picks the thread-pointer mechanism here too, so make test runs each. */
static enum coop_tls_mode tls_mode(void)
{
    const char *v = getenv("COOP_TLS");
    if (v != NULL && strcmp(v, "syscall") == 0)
        return COOP_TLS_SYSCALL;
    return v != NULL && strcmp(v, "fsgsbase") == 0 ? COOP_TLS_FSGSBASE : COOP_TLS_AUTO;
}

/* A number from the environment (COOP_HUBS: make test runs the unit tests with 1 and 2). */
static int env_number(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v != NULL ? atoi(v) : fallback;
}

int main(void)
{
    /* libuv's libc references jump through pointers this fills (shim/real.c). */
    shim_resolve_all();
    struct coop_settings settings = {
        .os_thread_self = os_thread_self,
        .os_thread_create = pthread_create,
        .os_thread_join = pthread_join,
        .os_sigaction = sigaction,
        .stack_size = 256 * 1024,
        .switch_ucontext = false,
        .tls_mode = tls_mode(),
        .preempt_ms = env_number("COOP_PREEMPT_MS", 2),
        .handoff_ms = env_number("COOP_HANDOFF_MS", 2),
        .max_spares = env_number("COOP_MAX_SPARES", COOP_SPARE_SLOTS),
        .hubs = env_number("COOP_HUBS", 0),
    };
    coop_init(&settings);
    unit_runner_pid = getpid();

    SRunner *sr = srunner_create(context_suite());
    srunner_add_suite(sr, greenlet_suite());
    srunner_add_suite(sr, timer_suite());
    srunner_add_suite(sr, fdwait_suite());
    srunner_add_suite(sr, park_suite());
    srunner_add_suite(sr, threadstate_suite());
    srunner_add_suite(sr, stack_suite());
    srunner_add_suite(sr, fork_suite());
    srunner_add_suite(sr, offload_suite());
    srunner_add_suite(sr, regressions_suite());
    srunner_add_suite(sr, preempt_suite());
    srunner_add_suite(sr, sched_suite());
    srunner_set_fork_status(sr, CK_FORK_GETENV);

    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
