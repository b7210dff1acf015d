/*
 * Reproducers of core bugs found while writing these tests. They fail until the core is
 * fixed, so they only run with COOP_UNIT_KNOWN_BUGS=1; once one passes, move it into the
 * suite of its subject.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

static void *return_arg(void *arg) { return arg; }

/*
 * core/tls.c swaps the executable's TLS block per greenlet. When the core is linked into
 * the executable (as in this binary), the block holds the core's own coop_tls_hub, and a
 * new greenlet's copy, made from the TLS image, has it NULL: coop_greenlet_main crashes
 * on the first switch to any spawned greenlet. Run in a child: it dies of SIGSEGV.
 */
static void spawn_plainly(void *unused)
{
    (void)unused;
    signal(SIGSEGV, SIG_DFL);
    struct coop_greenlet *g;
    struct coop_spawn_attr attr = { .guard_size = 4096 };
    if (coop_spawn(&g, return_arg, (void *)5, &attr) != 0)
        _exit(3);
    void *r = NULL;
    coop_join(g, &r, COOP_NO_DEADLINE);     /* no unit_fix_runtime_tls */
    _exit(r == (void *)5 ? 0 : 4);
}

START_TEST(test_spawn_without_tls_workaround)
{
    int status = unit_run_child(spawn_plainly, NULL, 5000, NULL, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "spawn+join without the TLS workaround: %s %d",
                  WIFSIGNALED(status) ? "killed by signal" : "exit",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
END_TEST

/*
 * The deadlock detector (diag.c) declares "all greenlets are asleep" and exits with
 * status 3 while a wakeup is already on its way: an interrupt posted by coop_interrupt
 * (what the shim's signal trampoline calls) is only delivered once the hub polls, and the
 * check runs before that poll. Nor can it know that a signal may still come: a lone
 * greenlet waiting in sem_wait for a handler's sem_post, or in pause(), is not dead.
 */
static int kb_addr, kb_result = -1;

static void *park_forever(void *unused)
{
    (void)unused;
    kb_result = coop_park(&kb_addr, NULL, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    return NULL;
}

static void interrupt_then_join(void *unused)
{
    (void)unused;
    struct coop_greenlet *g = unit_spawn(park_forever, NULL);
    coop_sleep_until(coop_now() + MS(5));      /* g parks */
    coop_interrupt(g, false);                  /* as a signal handler would */
    coop_join(g, NULL, COOP_NO_DEADLINE);
    _exit(kb_result == EINTR ? 0 : 1);
}

static void on_alarm(int sig)
{
    (void)sig;
    coop_interrupt(NULL, false);
}

static void lone_park_until_signal(void *unused)
{
    (void)unused;
    struct sigaction sa = { .sa_handler = on_alarm };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { .it_value = { 0, 30000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    int r = coop_park(&kb_addr, NULL, NULL, ~0u, COOP_NO_DEADLINE, "sem");
    _exit(r == EINTR ? 0 : 1);
}

START_TEST(test_no_deadlock_with_wakeup_pending)
{
    char err[4096];
    int status = unit_run_child(interrupt_then_join, NULL, 3000, err, sizeof err);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "interrupt posted, then join: status 0x%x, stderr: %s", status, err);
}
END_TEST

START_TEST(test_no_deadlock_while_a_signal_may_come)
{
    char err[4096];
    int status = unit_run_child(lone_park_until_signal, NULL, 3000, err, sizeof err);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "lone greenlet parked until SIGALRM: status 0x%x, stderr: %s", status, err);
}
END_TEST

/*
 * coop_fd_forget only looks at the calling thread's hub. A greenlet of another hub that
 * waits on the fd is not woken with EBADF, and that hub keeps the fd number marked as
 * registered: once the number is reused by a new socket, waits on it on that hub never
 * register the new file in epoll and never wake.
 */
static _Atomic int phase;
static int shared_fd, shared_peer;
static int first_wait, second_wait;

static void wait_phase(int n)
{
    while (atomic_load(&phase) < n)
        coop_sleep_until(coop_now() + MS(1));
}

static void *other_hub_thread(void *unused)
{
    (void)unused;
    coop_self();              /* makes this thread's hub (coop_wait_fd alone would not) */
    atomic_store(&phase, 1);
    first_wait = coop_wait_fd(shared_fd, COOP_READ, coop_now() + MS(300));     /* want EBADF */
    wait_phase(2);
    char c;
    if (read(shared_fd, &c, 1) != -1 || errno != EAGAIN) {
        second_wait = -1;
        return NULL;
    }
    atomic_store(&phase, 3);
    second_wait = coop_wait_fd(shared_fd, COOP_READ, coop_now() + MS(300));   /* want 0 */
    return NULL;
}

START_TEST(test_forget_reaches_other_hubs)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    shared_fd = sv[0];
    atomic_store(&phase, 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, other_hub_thread, NULL), 0);
    wait_phase(1);
    coop_sleep_until(coop_now() + MS(20));     /* the thread now waits on sv[0] */
    coop_fd_forget(sv[0]);                     /* what the shim's close does */
    close(sv[0]);
    close(sv[1]);
    int nv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, nv), 0);
    ck_assert_int_eq(nv[0], shared_fd);        /* the number came back */
    shared_peer = nv[1];
    atomic_store(&phase, 2);
    wait_phase(3);
    coop_sleep_until(coop_now() + MS(20));
    char c = 'k';
    ck_assert_int_eq(write(nv[1], &c, 1), 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    coop_fd_forget(nv[0]);
    coop_fd_forget(nv[1]);
    close(nv[0]);
    close(nv[1]);
    ck_assert_msg(first_wait == EBADF && second_wait == 0,
                  "waiter on another hub ended with %d (want EBADF %d); a wait there on the reused "
                  "fd number ended with %d (want 0)", first_wait, EBADF, second_wait);
}
END_TEST

/*
 * A forked child of a process whose libuv threadpool has started (coop_offload: name
 * lookups, regular files, waitpid...) dies in exit(): libuv's destructor
 * uv_library_shutdown joins pool threads that do not exist in the child (libuv issue
 * #4443; libuv supports no fork without exec). coop_fork_child does not disarm it, so a
 * forked child cannot return from main, call exit(), or end its last greenlet.
 */
static void noop(void *unused) { (void)unused; }

static void exit_normally(void *unused)
{
    (void)unused;
    exit(0);
}

START_TEST(test_exit_in_child_after_offload)
{
    coop_offload(noop, NULL);                  /* starts the pool in this process */
    int status = unit_run_child(exit_normally, NULL, 5000, NULL, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "exit(0) in a forked child after coop_offload: %s %d",
                  WIFSIGNALED(status) ? "killed by signal" : "exit",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
END_TEST

Suite *known_bugs_suite(void)
{
    Suite *s = suite_create("known-bugs");
    TCase *tc = unit_tcase("bugs");
    tcase_add_test(tc, test_spawn_without_tls_workaround);
    tcase_add_test(tc, test_forget_reaches_other_hubs);
    tcase_add_test(tc, test_no_deadlock_with_wakeup_pending);
    tcase_add_test(tc, test_no_deadlock_while_a_signal_may_come);
    tcase_add_test(tc, test_exit_in_child_after_offload);
    suite_add_tcase(s, tc);
    return s;
}
