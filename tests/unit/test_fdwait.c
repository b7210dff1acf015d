/*
 * fd waits on the hub's edge-triggered epoll set (fdwait.c). Callers follow the core's
 * contract: they wait only after the call they want to make would block (EAGAIN), and
 * re-check after every wakeup, since wakeups may be spurious.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

static void make_pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void close_pair(int sv[2])
{
    coop_fd_forget(sv[0]);
    coop_fd_forget(sv[1]);
    close(sv[0]);
    close(sv[1]);
}

static void put_byte(int fd, char c)
{
    ck_assert_int_eq(write(fd, &c, 1), 1);
}

/* A greenlet that reads one byte the way the shim would: try, wait on EAGAIN, retry. */
struct reader {
    int fd, events;
    int64_t deadline;
    volatile int waiting;
    int waits, result, got;
    int64_t woke;
};

static void *reader_body(void *arg)
{
    struct reader *r = arg;
    r->got = -1;
    for (;;) {
        char c;
        ssize_t n = read(r->fd, &c, 1);
        if (n == 1) {
            r->got = c;
            r->result = 0;
            break;
        }
        if (n == 0) {
            r->got = 'E';     /* end of file */
            r->result = 0;
            break;
        }
        if (errno != EAGAIN) {
            r->result = errno;
            break;
        }
        r->waiting = 1;
        r->waits++;
        int w = coop_wait_fd(r->fd, COOP_READ, r->deadline);
        r->waiting = 0;
        if (w != 0) {
            r->result = w;
            break;
        }
    }
    r->woke = coop_now();
    return NULL;
}

/* Waits once, whatever the fd's state, and reports how the wait ended. */
static void *wait_once_body(void *arg)
{
    struct reader *r = arg;
    r->waiting = 1;
    r->result = coop_wait_fd(r->fd, r->events, r->deadline);
    r->waiting = 0;
    r->woke = coop_now();
    return NULL;
}

START_TEST(test_wait_read_wakes_on_write)
{
    int sv[2];
    make_pair(sv);
    struct reader r = { .fd = sv[0], .deadline = COOP_NO_DEADLINE };
    struct coop_greenlet *g = unit_spawn(reader_body, &r);
    unit_yield_until(&r.waiting);
    coop_sleep_until(coop_now() + MS(20));
    ck_assert_int_eq(r.got, -1);              /* nothing to read: still waiting */
    put_byte(sv[1], 'x');
    unit_join(g);                             /* no deadline: a lost wakeup hangs */
    ck_assert_int_eq(r.result, 0);
    ck_assert_int_eq(r.got, 'x');
    ck_assert_int_le(r.waits, 2);             /* no busy wakeups while nothing came */

    /* Data already there when the wait is registered is not lost either: the next
     * reader reads first; a byte written while it waits wakes it. Repeat a few times
     * on the same, now registered, fd. */
    for (int i = 0; i < 5; i++) {
        struct reader r2 = { .fd = sv[0], .deadline = COOP_NO_DEADLINE };
        g = unit_spawn(reader_body, &r2);
        unit_yield_until(&r2.waiting);
        put_byte(sv[1], (char)('a' + i));
        unit_join(g);
        ck_assert_int_eq(r2.result, 0);
        ck_assert_int_eq(r2.got, 'a' + i);
    }
    close_pair(sv);
}
END_TEST

static int pipe_wfd;

static void *pipe_writer(void *unused)
{
    (void)unused;
    coop_sleep_until(coop_now() + MS(10));
    char c = 'w';
    return (void *)(intptr_t)write(pipe_wfd, &c, 1);
}

START_TEST(test_wait_from_main_greenlet_and_pipe)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    char c;
    ck_assert_int_eq(read(p[0], &c, 1), -1);
    ck_assert_int_eq(errno, EAGAIN);
    /* The test body is the main greenlet: it waits like any other. */
    int64_t t0 = coop_now();
    ck_assert_int_eq(coop_wait_fd(p[0], COOP_READ, t0 + MS(30)), ETIMEDOUT);
    ck_assert(coop_now() - t0 >= MS(30));

    pipe_wfd = p[1];
    t0 = coop_now();                          /* before: on two hubs the writer may start at once */
    struct coop_greenlet *g = unit_spawn(pipe_writer, NULL);
    ck_assert_int_eq(coop_wait_fd(p[0], COOP_READ, COOP_NO_DEADLINE), 0);
    ck_assert(coop_now() - t0 >= MS(10));     /* the writer sleeps 10 ms first */
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    ck_assert_int_eq(c, 'w');
    ck_assert_ptr_eq(unit_join(g), (void *)1);

    /* Readiness that came before the fd was first registered is not lost (the window
     * between a caller's EAGAIN and its first wait): the write end of an empty pipe is
     * writable, and a first WRITE wait on it returns at once. */
    ck_assert_int_eq(coop_wait_fd(p[1], COOP_WRITE, COOP_NO_DEADLINE), 0);
    coop_fd_forget(p[0]);
    coop_fd_forget(p[1]);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_wait_deadline)
{
    int sv[2];
    make_pair(sv);
    struct reader r = { .fd = sv[0], .deadline = coop_now() + MS(40) };
    struct coop_greenlet *g = unit_spawn(reader_body, &r);
    unit_join(g);
    ck_assert_int_eq(r.result, ETIMEDOUT);
    ck_assert(r.woke >= r.deadline);
    /* After the timeout the fd still works. */
    struct reader r2 = { .fd = sv[0], .deadline = COOP_NO_DEADLINE };
    g = unit_spawn(reader_body, &r2);
    unit_yield_until(&r2.waiting);
    put_byte(sv[1], 'y');
    unit_join(g);
    ck_assert_int_eq(r2.result, 0);
    ck_assert_int_eq(r2.got, 'y');
    close_pair(sv);
}
END_TEST

static int fill(int fd)
{
    static char junk[65536];
    int total = 0;
    for (;;) {
        ssize_t n = write(fd, junk, sizeof junk);
        if (n < 0) {
            ck_assert_int_eq(errno, EAGAIN);
            return total;
        }
        total += (int)n;
    }
}

static void drain(int fd)
{
    char buf[65536];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}

START_TEST(test_read_and_write_waiters_same_fd)
{
    int sv[2];
    make_pair(sv);
    ck_assert_int_gt(fill(sv[0]), 0);         /* sv[0] can no longer write */
    struct reader rd = { .fd = sv[0], .events = COOP_READ, .deadline = COOP_NO_DEADLINE };
    struct reader wr = { .fd = sv[0], .events = COOP_WRITE, .deadline = COOP_NO_DEADLINE };
    struct coop_greenlet *gr = unit_spawn(wait_once_body, &rd);
    struct coop_greenlet *gw = unit_spawn(wait_once_body, &wr);
    unit_wait_in(gr, WAIT_FD);                /* on two hubs, in either order */
    unit_wait_in(gw, WAIT_FD);
    coop_sleep_until(coop_now() + MS(10));
    ck_assert_int_eq(rd.waiting, 1);
    ck_assert_int_eq(wr.waiting, 1);

    put_byte(sv[1], 'r');                     /* readable, still not writable */
    unit_join(gr);
    ck_assert_int_eq(rd.result, 0);
    coop_sleep_until(coop_now() + MS(10));
    ck_assert_msg(wr.waiting, "the WRITE waiter woke for a READ event");

    drain(sv[1]);                             /* room again: writable */
    unit_join(gw);
    ck_assert_int_eq(wr.result, 0);
    close_pair(sv);
}
END_TEST

START_TEST(test_two_read_waiters_both_wake)
{
    int sv[2];
    make_pair(sv);
    struct reader a = { .fd = sv[0], .events = COOP_READ, .deadline = COOP_NO_DEADLINE };
    struct reader b = { .fd = sv[0], .events = COOP_READ, .deadline = COOP_NO_DEADLINE };
    struct coop_greenlet *ga = unit_spawn(wait_once_body, &a);
    struct coop_greenlet *gb = unit_spawn(wait_once_body, &b);
    unit_wait_in(ga, WAIT_FD);
    unit_wait_in(gb, WAIT_FD);
    put_byte(sv[1], 'z');
    unit_join(ga);
    unit_join(gb);
    ck_assert_int_eq(a.result, 0);
    ck_assert_int_eq(b.result, 0);
    close_pair(sv);
}
END_TEST

/* A poll takes no more events than the run queue has room for (hub.c): with the queue
 * nearly full of greenlets that yield (on one hub: no room left), fds that are all ready at
 * once are dispatched a few dozen per poll, and the rest stay in the set. The crowd then
 * waits behind a gate, and the hub, with nothing queued, sleeps in its fd set: what is left
 * must end that sleep, and every reader wakes. */
enum { CROWD = COOP_RUNQ_SIZE - 32, READERS = 300 };

static void *yield_then_wait_at_the_gate(void *arg)
{
    int gate = *(int *)arg;
    coop_yield();
    return (void *)(intptr_t)coop_wait_fd(gate, COOP_READ, coop_now() + MS(20000));
}

START_TEST(test_ready_fds_beyond_the_queue_room)
{
    static int pairs[READERS][2];
    static struct reader readers[READERS];
    static struct coop_greenlet *waiting[READERS], *crowd[CROWD];
    int gate[2];
    make_pair(gate);
    for (int i = 0; i < READERS; i++) {
        make_pair(pairs[i]);
        readers[i] = (struct reader){ .fd = pairs[i][0], .deadline = coop_now() + MS(20000) };
        waiting[i] = unit_spawn(reader_body, &readers[i]);
    }
    for (int i = 0; i < READERS; i++)
        unit_wait_in(waiting[i], WAIT_FD);
    for (int i = 0; i < CROWD; i++)
        crowd[i] = unit_spawn(yield_then_wait_at_the_gate, &gate[0]);
    for (int i = 0; i < READERS; i++)
        put_byte(pairs[i][1], 'q');
    for (int i = 0; i < READERS; i++) {
        unit_join(waiting[i]);
        ck_assert_int_eq(readers[i].result, 0);
        ck_assert_int_eq(readers[i].got, 'q');
    }
    for (int i = 0; i < CROWD; i++)
        unit_wait_in(crowd[i], WAIT_FD);
    close_pair(gate);                         /* its waiters wake with EBADF */
    for (int i = 0; i < CROWD; i++)
        ck_assert_int_eq((intptr_t)unit_join(crowd[i]), EBADF);
    for (int i = 0; i < READERS; i++)
        close_pair(pairs[i]);
}
END_TEST

START_TEST(test_hangup_wakes_reader)
{
    int sv[2];
    make_pair(sv);
    struct reader r = { .fd = sv[0], .deadline = COOP_NO_DEADLINE };
    struct coop_greenlet *g = unit_spawn(reader_body, &r);
    unit_yield_until(&r.waiting);
    close(sv[1]);                             /* the peer goes: EOF */
    unit_join(g);
    ck_assert_int_eq(r.result, 0);
    ck_assert_int_eq(r.got, 'E');
    coop_fd_forget(sv[0]);
    close(sv[0]);
}
END_TEST

START_TEST(test_forget_wakes_with_ebadf)
{
    int sv[2];
    make_pair(sv);
    struct reader a = { .fd = sv[0], .events = COOP_READ, .deadline = COOP_NO_DEADLINE };
    struct reader b = { .fd = sv[0], .events = COOP_WRITE | COOP_READ, .deadline = COOP_NO_DEADLINE };
    fill(sv[0]);
    struct coop_greenlet *ga = unit_spawn(wait_once_body, &a);
    struct coop_greenlet *gb = unit_spawn(wait_once_body, &b);
    unit_wait_in(ga, WAIT_FD);      /* both linked: the close must find them, not come first */
    unit_wait_in(gb, WAIT_FD);
    int fdnum = sv[0];
    coop_fd_forget(sv[0]);
    close(sv[0]);
    unit_join(ga);
    unit_join(gb);
    ck_assert_int_eq(a.result, EBADF);
    ck_assert_int_eq(b.result, EBADF);
    coop_fd_forget(sv[1]);
    close(sv[1]);

    /* The number comes back for a new socket: waits on it work. */
    int nv[2];
    make_pair(nv);
    ck_assert_int_eq(nv[0], fdnum);
    struct reader r = { .fd = nv[0], .deadline = COOP_NO_DEADLINE };
    struct coop_greenlet *g = unit_spawn(reader_body, &r);
    unit_yield_until(&r.waiting);
    put_byte(nv[1], 'n');
    unit_join(g);
    ck_assert_int_eq(r.result, 0);
    ck_assert_int_eq(r.got, 'n');
    /* Forgetting an fd nobody waits on, or one never seen, is harmless. */
    coop_fd_forget(nv[1]);
    coop_fd_forget(nv[1]);
    coop_fd_forget(100000);
    coop_fd_forget(-1);
    close_pair(nv);
}
END_TEST

struct multi { struct coop_fd_event *set; int n; int64_t deadline; volatile int waiting; int result; };

static void *multi_body(void *arg)
{
    struct multi *m = arg;
    m->waiting = 1;
    m->result = coop_wait_fds(m->set, m->n, m->deadline);
    m->waiting = 0;
    return NULL;
}

static void wait_fds_any(int n, int which)
{
    int (*sv)[2] = calloc((size_t)n, sizeof *sv);
    struct coop_fd_event *set = calloc((size_t)n, sizeof *set);
    for (int i = 0; i < n; i++) {
        make_pair(sv[i]);
        set[i] = (struct coop_fd_event){ sv[i][0], COOP_READ };
    }
    struct multi m = { .set = set, .n = n, .deadline = COOP_NO_DEADLINE };
    struct coop_greenlet *g = unit_spawn(multi_body, &m);
    unit_yield_until(&m.waiting);
    coop_sleep_until(coop_now() + MS(5));
    ck_assert(m.waiting);
    put_byte(sv[which][1], 'm');
    unit_join(g);
    ck_assert_int_eq(m.result, 0);
    /* Every waiter left the fds' lists: events on the others reach nobody. */
    for (int i = 0; i < n; i++)
        put_byte(sv[i][1], 'q');
    coop_sleep_until(coop_now() + MS(2));

    /* None ready: the deadline. */
    for (int i = 0; i < n; i++)
        drain(sv[i][0]);
    m = (struct multi){ .set = set, .n = n, .deadline = coop_now() + MS(20) };
    g = unit_spawn(multi_body, &m);
    unit_join(g);
    ck_assert_int_eq(m.result, ETIMEDOUT);
    for (int i = 0; i < n; i++)
        close_pair(sv[i]);
    free(set);
    free(sv);
}

/* The watcher really goes: a file still open through a dup no longer reports under the
 * forgotten number, now used by another socket. */
START_TEST(test_forget_unregisters)
{
    int sv[2];
    make_pair(sv);
    int keep = dup(sv[0]);
    ck_assert_int_ge(keep, 0);
    ck_assert_int_eq(coop_wait_fd(sv[0], COOP_READ, coop_now() + MS(5)), ETIMEDOUT);
    int fdnum = sv[0];
    coop_fd_forget(sv[0]);
    close(sv[0]);
    int nv[2];
    make_pair(nv);
    ck_assert_int_eq(nv[0], fdnum);
    struct reader r = { .fd = nv[0], .events = COOP_READ, .deadline = coop_now() + MS(60) };
    struct coop_greenlet *g = unit_spawn(wait_once_body, &r);
    unit_yield_until(&r.waiting);
    put_byte(sv[1], 'o');                     /* the old file, readable through keep */
    unit_join(g);
    ck_assert_msg(r.result == ETIMEDOUT, "woken by the old file's event: %d", r.result);
    close(keep);
    coop_fd_forget(sv[1]);
    close(sv[1]);
    close_pair(nv);
}
END_TEST

START_TEST(test_wait_fds_any)
{
    wait_fds_any(3, 1);
    wait_fds_any(3, 2);
    wait_fds_any(20, 17);        /* more than the on-stack waiter array holds */
}
END_TEST

START_TEST(test_regular_file_and_bad_fds)
{
    char path[] = "/tmp/coop-unit-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(coop_wait_fd(fd, COOP_READ, COOP_NO_DEADLINE), EPERM);
    ck_assert_int_eq(coop_wait_fd(fd, COOP_WRITE, COOP_NO_DEADLINE), EPERM);
    ck_assert_int_eq(coop_wait_fd(-1, COOP_READ, COOP_NO_DEADLINE), EBADF);
    ck_assert_int_eq(coop_wait_fd(9999, COOP_READ, COOP_NO_DEADLINE), EBADF);

    /* A set with one socket and the regular file: refused as a whole, and the socket
     * keeps no waiter behind (a later write there must not touch this frame). */
    int sv[2];
    make_pair(sv);
    struct coop_fd_event set[2] = { { sv[0], COOP_READ }, { fd, COOP_READ } };
    ck_assert_int_eq(coop_wait_fds(set, 2, COOP_NO_DEADLINE), EPERM);
    put_byte(sv[1], 'p');
    coop_sleep_until(coop_now() + MS(2));
    /* The caller is not left waiting: it can wait again and sleep normally. */
    struct reader r = { .fd = sv[0], .deadline = COOP_NO_DEADLINE };
    unit_join(unit_spawn(reader_body, &r));
    ck_assert_int_eq(r.result, 0);
    ck_assert_int_eq(r.got, 'p');
    int64_t t0 = coop_now();
    coop_sleep_until(t0 + MS(5));
    ck_assert(coop_now() - t0 >= MS(5));
    coop_fd_forget(fd);
    close(fd);
    close_pair(sv);
}
END_TEST

START_TEST(test_interrupt_fd_wait)
{
    int sv[2];
    make_pair(sv);
    struct reader r = { .fd = sv[0], .events = COOP_READ, .deadline = COOP_NO_DEADLINE };
    struct coop_greenlet *g = unit_spawn(wait_once_body, &r);
    unit_wait_in(g, WAIT_FD);
    coop_interrupt(g, false);
    unit_join(g);
    ck_assert_int_eq(r.result, EINTR);
    close_pair(sv);
}
END_TEST

Suite *fdwait_suite(void)
{
    Suite *s = suite_create("fdwait");
    TCase *tc = unit_tcase("fds");
    tcase_add_test(tc, test_wait_read_wakes_on_write);
    tcase_add_test(tc, test_wait_from_main_greenlet_and_pipe);
    tcase_add_test(tc, test_wait_deadline);
    tcase_add_test(tc, test_read_and_write_waiters_same_fd);
    tcase_add_test(tc, test_two_read_waiters_both_wake);
    tcase_add_test(tc, test_hangup_wakes_reader);
    tcase_add_test(tc, test_forget_wakes_with_ebadf);
    tcase_add_test(tc, test_forget_unregisters);
    tcase_add_test(tc, test_wait_fds_any);
    tcase_add_test(tc, test_regular_file_and_bad_fds);
    tcase_add_test(tc, test_interrupt_fd_wait);
    tcase_add_test(tc, test_ready_fds_beyond_the_queue_room);
    suite_add_tcase(s, tc);
    return s;
}
