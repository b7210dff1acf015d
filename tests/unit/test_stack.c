/*
 * Stacks (stack.c): allocation, guards that really fault (checked in a forked child), the
 * light-guard probe, and 100,000 stacks within vm.max_map_count.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#define PAGE 4096UL

static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF)
        lines += c == '\n';
    fclose(f);
    return lines;
}

static long max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

/* Runs touch(addr) in a child; returns its wait status. */
static int status_of_touch(volatile char *addr, bool write)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        if (write)
            *addr = 1;
        else
            (void)*addr;
        _exit(0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static bool died_of_segv(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV; }
static bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

START_TEST(test_alloc_free)
{
    size_t dflt = coop_stack_default_size();
    ck_assert_uint_eq(dflt, 256 * 1024);        /* as main.c configured it */
    struct coop_stack s;
    ck_assert_int_eq(coop_stack_alloc(&s, dflt, PAGE), 0);
    ck_assert_ptr_nonnull(s.base);
    ck_assert_uint_eq((uintptr_t)s.base % PAGE, 0);
    ck_assert_uint_eq(s.size, dflt);
    ck_assert_uint_eq(s.guard, PAGE);
    ck_assert(!s.foreign);
    memset(s.base, 0x5a, s.size);               /* all of it is usable */
    ck_assert(coop_stack_in_guard(&s, s.base - 1));
    ck_assert(coop_stack_in_guard(&s, s.base - PAGE));
    ck_assert(!coop_stack_in_guard(&s, s.base - PAGE - 1));
    ck_assert(!coop_stack_in_guard(&s, s.base));
    ck_assert(!coop_stack_in_guard(&s, s.base + s.size - 1));

    /* Sizes round up to pages; odd sizes and guards are honoured. */
    struct coop_stack t;
    ck_assert_int_eq(coop_stack_alloc(&t, 10000, 3 * PAGE), 0);
    ck_assert_uint_eq(t.size, 3 * PAGE);
    ck_assert_uint_eq(t.guard, 3 * PAGE);
    memset(t.base, 1, t.size);
    ck_assert(coop_stack_in_guard(&t, t.base - 3 * PAGE));

    /* No guard asked: none. */
    struct coop_stack u;
    ck_assert_int_eq(coop_stack_alloc(&u, 64 * 1024, 0), 0);
    ck_assert_uint_eq(u.guard, 0);
    ck_assert(!coop_stack_in_guard(&u, u.base - 1));

    /* Distinct stacks do not overlap. */
    ck_assert(s.base + s.size <= t.base - t.guard || t.base + t.size <= s.base - s.guard);
    coop_stack_free(&s);
    coop_stack_free(&t);
    coop_stack_free(&u);

    /* Freed default stacks are reused. */
    struct coop_stack a, b;
    ck_assert_int_eq(coop_stack_alloc(&a, dflt, PAGE), 0);
    char *first = a.base;
    coop_stack_free(&a);
    ck_assert_int_eq(coop_stack_alloc(&b, dflt, PAGE), 0);
    ck_assert_ptr_eq(b.base, first);
    coop_stack_free(&b);

    /* Impossible sizes fail with ENOMEM. */
    struct coop_stack huge;
    ck_assert_int_eq(coop_stack_alloc(&huge, (size_t)1 << 50, PAGE), ENOMEM);
}
END_TEST

START_TEST(test_guard_faults)
{
    struct coop_stack s, t;
    ck_assert_int_eq(coop_stack_alloc(&s, coop_stack_default_size(), PAGE), 0);
    ck_assert_int_eq(coop_stack_alloc(&t, 40 * 1024, 2 * PAGE), 0);

    /* Usable bytes at both ends: the child lives. */
    ck_assert(exited_ok(status_of_touch(s.base, true)));
    ck_assert(exited_ok(status_of_touch(s.base + s.size - 1, true)));
    ck_assert(exited_ok(status_of_touch(t.base, true)));

    /* The guard: SIGSEGV, reading or writing, at either end of it. */
    int st = status_of_touch(s.base - 1, true);
    ck_assert_msg(died_of_segv(st), "write below a pooled stack: status 0x%x", st);
    ck_assert(died_of_segv(status_of_touch(s.base - PAGE, false)));
    ck_assert(died_of_segv(status_of_touch(t.base - 1, true)));
    ck_assert(died_of_segv(status_of_touch(t.base - 2 * PAGE, true)));

    /* A recycled pooled stack keeps its guard. */
    char *base = s.base;
    coop_stack_free(&s);
    ck_assert_int_eq(coop_stack_alloc(&s, coop_stack_default_size(), PAGE), 0);
    ck_assert_ptr_eq(s.base, base);
    ck_assert(died_of_segv(status_of_touch(s.base - 1, true)));
    coop_stack_free(&s);
    coop_stack_free(&t);
}
END_TEST

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

START_TEST(test_light_guards_probe)
{
    /* Ask the kernel directly, then compare. */
    char *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(p != MAP_FAILED);
    bool kernel_has = madvise(p, PAGE, MADV_GUARD_INSTALL) == 0;
    if (kernel_has)
        ck_assert(died_of_segv(status_of_touch(p, false)));
    munmap(p, 2 * PAGE);
    ck_assert_int_eq(coop_stack_light_guards(), kernel_has);
    ck_assert_int_eq(coop_stack_light_guards(), kernel_has);     /* stable */
}
END_TEST

/* A greenlet overflowing its stack dies on the guard instead of writing past it. */
static int recurse(int depth)
{
    volatile char pad[1024];
    pad[0] = (char)depth;
    if (depth == 0)
        return pad[0];
    return recurse(depth - 1) + pad[0];
}

static volatile int named;

static void *overflow_body(void *arg)
{
    unit_yield_until(&named);                 /* another hub may run it at once */
    return (void *)(intptr_t)recurse((int)(intptr_t)arg);
}

static void overflow_child(void *handler)
{
    if (handler == NULL)
        signal(SIGSEGV, SIG_DFL);             /* no report: the bare guard */
    struct coop_greenlet *g = unit_spawn(overflow_body, (void *)(intptr_t)100000);   /* ~100 MiB */
    coop_greenlet_set_name(g, "deep");
    named = 1;
    coop_join(g, NULL, COOP_NO_DEADLINE);
}

START_TEST(test_greenlet_overflow_hits_guard)
{
#ifdef __SANITIZE_ADDRESS__
    return;      /* AddressSanitizer takes SIGSEGV and maps memory of its own */
#endif
    int status = unit_run_child(overflow_child, NULL, UNIT_CHILD_GUARD_MS, NULL, 0);
    ck_assert_msg(died_of_segv(status), "overflowing greenlet: status 0x%x", status);

    /* With coop's SIGSEGV handler (installed by coop_init when the program has none): a
     * report naming the greenlet, then death by SIGSEGV all the same. */
    char err[8192];
    status = unit_run_child(overflow_child, (void *)1, UNIT_CHILD_GUARD_MS, err, sizeof err);
    ck_assert_msg(died_of_segv(status), "overflowing greenlet with coop's handler: status 0x%x", status);
    ck_assert_msg(strstr(err, "overflowed") != NULL && strstr(err, "\"deep\"") != NULL,
                  "no overflow report: \"%s\"", err);
    /* (Its stack trace is empty here: dumps leave out the frames of the object that holds
     * the runtime, which in this binary is the whole executable.) */

    /* A deep recursion that fits is fine. */
    named = 1;
    unit_join(unit_spawn(overflow_body, (void *)(intptr_t)100));
}
END_TEST

START_TEST(test_hundred_thousand_stacks)
{
#ifdef __SANITIZE_ADDRESS__
    return;      /* AddressSanitizer takes SIGSEGV and maps memory of its own */
#endif
    enum { N = 100000 };
    if (!coop_stack_light_guards()) {
        /* Two mappings per stack (mprotect guards): 100,000 cannot fit under 65,530. */
        fprintf(stderr, "unit: no MADV_GUARD_INSTALL on this kernel: 100,000-stack test skipped\n");
        return;
    }
    struct coop_stack *s = malloc(N * sizeof *s);
    ck_assert_ptr_nonnull(s);
    size_t dflt = coop_stack_default_size();
    int before = count_maps();
    for (int i = 0; i < N; i++) {
        int err = coop_stack_alloc(&s[i], dflt, PAGE);
        ck_assert_msg(err == 0, "stack %d: %s", i, strerror(err));
    }
    int after = count_maps();
    long limit = max_map_count();
    /* One mapping per 256 stacks, give or take merged neighbours. */
    ck_assert_msg(after - before <= N / 256 + 16, "100,000 stacks took %d mappings", after - before);
    ck_assert_int_lt(after, limit);
    /* They are distinct, and a few of them are usable. */
    for (int i = 0; i < N; i += 9973) {
        s[i].base[0] = 1;
        s[i].base[s[i].size - 1] = 1;
    }
    ck_assert(s[0].base != s[1].base && s[1].base != s[2].base);
    for (int i = 0; i < N; i++)
        coop_stack_free(&s[i]);
    free(s);
    /* Freeing keeps the arenas for reuse, it adds no mappings. */
    ck_assert_int_le(count_maps(), after + 16);
}
END_TEST

Suite *stack_suite(void)
{
    Suite *s = suite_create("stack");
    TCase *tc = unit_tcase("stacks");
    tcase_add_test(tc, test_alloc_free);
    tcase_add_test(tc, test_guard_faults);
    tcase_add_test(tc, test_light_guards_probe);
    tcase_add_test(tc, test_greenlet_overflow_hits_guard);
    tcase_add_test(tc, test_hundred_thousand_stacks);

    tcase_set_timeout(tc, 120);    /* a hang guard (100,000 stacks under ASan) */
    suite_add_tcase(s, tc);
    return s;
}
