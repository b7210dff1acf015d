/*
 * Regression tests: reproducers of core bugs found while writing the unit tests, kept
 * once fixed; each comment describes the bug as it was found. (coop_fd_forget acting on
 * one hub only is a documented limit, not a test.)

 */
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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
    int status = unit_run_child(spawn_plainly, NULL, UNIT_CHILD_GUARD_MS, NULL, 0);
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
    unit_wait_parked(g);      /* an interrupt ends only a wait under way (a 5 ms sleep: not always, under ASan) */
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
    coop_note_signal_handler();    /* what the shim's sigaction does */
    struct itimerval it = { .it_value = { 0, 30000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    int r = coop_park(&kb_addr, NULL, NULL, ~0u, COOP_NO_DEADLINE, "sem");
    _exit(r == EINTR ? 0 : 1);
}

START_TEST(test_no_deadlock_with_wakeup_pending)
{
    char err[4096];
    int status = unit_run_child(interrupt_then_join, NULL, UNIT_CHILD_GUARD_MS, err, sizeof err);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "interrupt posted, then join: status 0x%x, stderr: %s", status, err);
}
END_TEST

START_TEST(test_no_deadlock_while_a_signal_may_come)
{
    char err[4096];
    int status = unit_run_child(lone_park_until_signal, NULL, UNIT_CHILD_GUARD_MS, err, sizeof err);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "lone greenlet parked until SIGALRM: status 0x%x, stderr: %s", status, err);
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
    int status = unit_run_child(exit_normally, NULL, UNIT_CHILD_GUARD_MS, NULL, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "exit(0) in a forked child after coop_offload: %s %d",
                  WIFSIGNALED(status) ? "killed by signal" : "exit",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
END_TEST

/*
 * With FSGSBASE, core/tls.c gives a greenlet its own TLS area: a copy of the OS thread's
 * static TLS and thread control block. glibc's rseq area is in that block, and the kernel
 * keeps updating the OS thread's original, not the copy: sched_getcpu() in a greenlet
 * keeps answering the CPU the greenlet was created on (and rseq users such as tcmalloc's
 * per-CPU caches would work on a stale area whose sequences are never aborted).
 */
static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int cpu_seen[2] = { -1, -1 }, cpu_real[2] = { -1, -1 };

static void *getcpu_body(void *unused)
{
    (void)unused;
    for (int cpu = 0; cpu < 2; cpu++) {
        pin(cpu);
        cpu_seen[cpu] = sched_getcpu();
        unsigned c = 0;
        syscall(SYS_getcpu, &c, NULL, NULL);
        cpu_real[cpu] = (int)c;
    }
    return NULL;
}

START_TEST(test_sched_getcpu_in_greenlet)
{
    cpu_set_t old;
    sched_getaffinity(0, sizeof old, &old);
    if (CPU_COUNT(&old) < 2 || !CPU_ISSET(0, &old) || !CPU_ISSET(1, &old))
        return;                                /* needs CPUs 0 and 1 */
    pin(0);
    unit_join(unit_spawn(getcpu_body, NULL));
    sched_setaffinity(0, sizeof old, &old);
    ck_assert_int_eq(cpu_real[1], 1);
    ck_assert_msg(cpu_seen[0] == 0 && cpu_seen[1] == 1,
                  "sched_getcpu in a greenlet pinned to CPU 0 then 1: %d then %d", cpu_seen[0], cpu_seen[1]);
}
END_TEST

/*
 * stack.c: "free pooled stacks beyond POOL_KEEP_BACKED give their memory back to the
 * kernel", but coop_stack_free stores the free-list link in each stack's top page after
 * the MADV_DONTNEED: every freed stack keeps one page resident. After a burst of 100,000
 * greenlets the process keeps about 400 MB for good.
 */
START_TEST(test_freed_stacks_give_memory_back)
{
    enum { N = 20000 };
    struct coop_stack *s = malloc(N * sizeof *s);
    size_t size = coop_stack_default_size();
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(coop_stack_alloc(&s[i], size, 4096), 0);
    for (int i = 0; i < N; i++)
        coop_stack_free(&s[i]);
    int resident = 0;
    for (int i = 0; i < N; i++) {
        unsigned char vec;
        char *top = s[i].base + s[i].size - 4096;
        if (mincore(top, 4096, &vec) == 0 && (vec & 1))
            resident++;
    }
    free(s);
    ck_assert_msg(resident <= 1024, "%d of %d freed stacks keep a resident page (%d KiB)",
                  resident, N, resident * 4);
}
END_TEST

Suite *regressions_suite(void)
{
    Suite *s = suite_create("regressions");
    TCase *tc = unit_tcase("regressions");
    tcase_add_test(tc, test_spawn_without_tls_workaround);
    tcase_add_test(tc, test_no_deadlock_with_wakeup_pending);
    tcase_add_test(tc, test_no_deadlock_while_a_signal_may_come);
    tcase_add_test(tc, test_exit_in_child_after_offload);
    tcase_add_test(tc, test_sched_getcpu_in_greenlet);
    tcase_add_test(tc, test_freed_stacks_give_memory_back);
    suite_add_tcase(s, tc);
    return s;
}
