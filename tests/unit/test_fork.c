/*
 * coop_fork_child: after fork() only the forking greenlet lives on in the child, as POSIX
 * keeps only the forking thread, with a loop and an epoll set of its own.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

/* Fork at rest: the tests fork only once the parent's other greenlet has parked. A greenlet
 * starting on another hub at that moment may be inside malloc, and the sanitizer runtime of
 * GCC 12 takes no lock of its allocator's around fork: under ASan the child could inherit
 * one held for good (it did, about once in a hundred runs on two hubs). */
static int parked_addr;

static void *park_body(void *unused)
{
    (void)unused;
    int r = coop_park(&parked_addr, NULL, NULL, ~0u, coop_now() + MS(5000), "unit");
    return (void *)(intptr_t)r;
}

static void *return_arg(void *arg) { return arg; }

/* Checks in the child, one bit per failure: the exit status says which failed. */
static int child_checks(struct coop_greenlet *self)
{
    int bad = 0;
    if (coop_self() != self)
        bad |= 1;
    if (coop_main_greenlet != self)               /* the one process-wide signals interrupt */
        bad |= 2;
    if (!coop_alone())
        bad |= 4;
    if (coop_unpark(&parked_addr, 1, ~0u) != 0)          /* the parent's parker is not here */
        bad |= 8;
    struct coop_greenlet *g;
    struct coop_spawn_attr attr = { .guard_size = 4096 };
    void *r = NULL;
    if (coop_spawn(&g, return_arg, (void *)9, &attr) != 0)
        bad |= 16;
    else {
        if (coop_join(g, &r, COOP_NO_DEADLINE) != 0 || r != (void *)9)
            bad |= 16;
    }
    int64_t t0 = coop_now();
    if (coop_sleep_until(t0 + MS(10)) != 0 || coop_now() - t0 < MS(10))
        bad |= 32;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        bad |= 64;
    else {
        if (coop_wait_fd(sv[0], COOP_READ, coop_now() + MS(20)) != ETIMEDOUT)
            bad |= 64;
        char c = 'c';
        if (write(sv[1], &c, 1) != 1 || coop_wait_fd(sv[0], COOP_READ, coop_now() + MS(1000)) != 0)
            bad |= 64;
    }
    return bad;
}

static int status_of(pid_t pid)
{
    int status = 0;
    int64_t give_up = coop_now() + MS(60000);     /* a hang guard */
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (coop_now() > give_up) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        coop_sleep_until(coop_now() + MS(1));
    }
    return status;
}

static void parent_still_works(void)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ck_assert_int_eq(coop_wait_fd(sv[0], COOP_READ, coop_now() + MS(10)), ETIMEDOUT);
    char c = 'p';
    ck_assert_int_eq(write(sv[1], &c, 1), 1);
    ck_assert_int_eq(coop_wait_fd(sv[0], COOP_READ, coop_now() + MS(1000)), 0);
    coop_fd_forget(sv[0]);
    coop_fd_forget(sv[1]);
    close(sv[0]);
    close(sv[1]);
}

START_TEST(test_fork_from_main_greenlet)
{
    struct coop_greenlet *p = unit_spawn(park_body, NULL);
    unit_wait_parked(p);       /* quiet: see "Fork at rest" */
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        coop_fork_child();
        _exit(child_checks(coop_self()));
    }
    int status = status_of(pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
    /* The parent's greenlets and waits are untouched. */
    ck_assert_int_eq(coop_unpark(&parked_addr, 1, ~0u), 1);
    ck_assert_ptr_eq(unit_join(p), (void *)0);
    parent_still_works();
}
END_TEST

static pid_t forked;
static int returned_in_child;

static void *forking_greenlet(void *unused)
{
    (void)unused;
    fflush(NULL);
    forked = fork();
    if (forked == 0) {
        coop_fork_child();
        int bad = child_checks(coop_self());
        if (bad != 0)
            _exit(bad);
        /* Returning ends the child's only greenlet, and so the child, with status 0;
         * nothing of the parent's main greenlet may run in the child. */
        returned_in_child = 1;
        return (void *)1;
    }
    return NULL;
}

START_TEST(test_fork_from_spawned_greenlet)
{
    returned_in_child = 0;
    struct coop_greenlet *p = unit_spawn(park_body, NULL);
    unit_wait_parked(p);
    struct coop_greenlet *g = unit_spawn(forking_greenlet, NULL);
    unit_join(g);
    if (returned_in_child)
        _exit(99);                             /* the child came back here: wrong */
    ck_assert_int_gt(forked, 0);
    int status = status_of(forked);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
    ck_assert_int_eq(coop_unpark(&parked_addr, 1, ~0u), 1);
    unit_join(p);
    parent_still_works();
}
END_TEST

Suite *fork_suite(void)
{
    Suite *s = suite_create("fork");
    TCase *tc = unit_tcase("fork");
    tcase_add_test(tc, test_fork_from_main_greenlet);
    tcase_add_test(tc, test_fork_from_spawned_greenlet);
    suite_add_tcase(s, tc);
    return s;
}
