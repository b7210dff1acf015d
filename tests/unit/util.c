/* Helpers shared by the unit tests (see unit.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

pid_t unit_runner_pid;

struct coop_greenlet *unit_spawn_attr(void *(*fn)(void *), void *arg, struct coop_spawn_attr attr)
{
    struct coop_greenlet *g = NULL;
    int err = coop_spawn(&g, fn, arg, &attr);
    ck_assert_msg(err == 0, "coop_spawn: %s", strerror(err));
    return g;
}

struct coop_greenlet *unit_spawn(void *(*fn)(void *), void *arg)
{
    return unit_spawn_attr(fn, arg, (struct coop_spawn_attr){ .guard_size = 4096 });
}

void *unit_join(struct coop_greenlet *g)
{
    void *result = NULL;
    int err = coop_join(g, &result, COOP_NO_DEADLINE);
    ck_assert_msg(err == 0, "coop_join: %s", strerror(err));
    return result;
}

int unit_run_child(void (*body)(void *), void *arg, int timeout_ms, char *err, size_t err_len)
{
    int pipefd[2] = { -1, -1 };
    if (err != NULL)
        ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC | O_NONBLOCK), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (err != NULL) {
            dup2(pipefd[1], STDERR_FILENO);
            int flags = fcntl(STDERR_FILENO, F_GETFL);
            fcntl(STDERR_FILENO, F_SETFL, flags & ~O_NONBLOCK);
        }
        coop_fork_child();
        body(arg);
        _exit(0);
    }
    if (err != NULL)
        close(pipefd[1]);
    int status = 0;
    int64_t give_up = coop_now() + MS(timeout_ms);
    size_t got = 0;
    for (;;) {
        if (err != NULL && got + 1 < err_len) {
            ssize_t n = read(pipefd[0], err + got, err_len - 1 - got);
            if (n > 0)
                got += (size_t)n;
        }
        pid_t r = waitpid(pid, &status, WNOHANG);
        ck_assert_int_ne(r, -1);
        if (r == pid)
            break;
        if (coop_now() > give_up) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        coop_sleep_until(coop_now() + MS(1));
    }
    if (err != NULL) {
        ssize_t n;
        while (got + 1 < err_len && (n = read(pipefd[0], err + got, err_len - 1 - got)) > 0)
            got += (size_t)n;
        err[got] = '\0';
        close(pipefd[0]);
    }
    return status;
}

void unit_yield_until(volatile int *flag)
{
    int64_t give_up = coop_now() + MS(60000);
    while (!*flag) {
        ck_assert_msg(coop_now() < give_up, "gave up waiting for a greenlet");
        coop_yield();
    }
}

void unit_wait_in(struct coop_greenlet *g, enum coop_wait_kind kind)
{
    int64_t give_up = coop_now() + MS(60000);
    while (coop_gstate_get(g) != G_WAITING || __atomic_load_n(&g->waiting.kind, __ATOMIC_RELAXED) != kind
           || atomic_load_explicit(&g->on_cpu, memory_order_acquire)) {
        ck_assert_msg(coop_now() < give_up, "gave up waiting for a greenlet to wait");
        coop_yield();
    }
}

void unit_wait_parked(struct coop_greenlet *g) { unit_wait_in(g, WAIT_PARK); }

void unit_checked_setup(void)
{
    if (getpid() != unit_runner_pid)
        coop_fork_child();
}

void unit_checked_teardown(void)
{
    ck_assert_msg(coop_alone(), "a test left program greenlets alive");
}

TCase *unit_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, unit_checked_setup, unit_checked_teardown);
    tcase_set_timeout(tc, 60);     /* a hang guard: nothing here is timed */
    return tc;
}

__asm__(
    ".text\n"
    ".globl unit_call_with_regs\n"
    ".type unit_call_with_regs, @function\n"
    /* rdi fn, rsi arg, rdx seed, rcx out */
    "unit_call_with_regs:\n"
    "\tendbr64\n"
    "\tpushq %rbx\n\tpushq %rbp\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
    "\tpushq %rcx\n"                      /* 7 pushes: the stack is 16-byte aligned again */
    "\tmovq %rdi, %rax\n"
    "\tmovq %rsi, %rdi\n"
    "\tmovq %rdx, %rbx\n"
    "\tleaq 1(%rdx), %rbp\n"
    "\tleaq 2(%rdx), %r12\n"
    "\tleaq 3(%rdx), %r13\n"
    "\tleaq 4(%rdx), %r14\n"
    "\tleaq 5(%rdx), %r15\n"
    "\tcall *%rax\n"
    "\tmovq (%rsp), %rcx\n"
    "\tmovq %rbx, 0(%rcx)\n\tmovq %rbp, 8(%rcx)\n\tmovq %r12, 16(%rcx)\n"
    "\tmovq %r13, 24(%rcx)\n\tmovq %r14, 32(%rcx)\n\tmovq %r15, 40(%rcx)\n"
    "\tpopq %rcx\n"
    "\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbp\n\tpopq %rbx\n"
    "\tret\n"
    ".size unit_call_with_regs, .-unit_call_with_regs\n"

    ".globl unit_caller_rsp\n"
    ".type unit_caller_rsp, @function\n"
    "unit_caller_rsp:\n"
    "\tendbr64\n"
    "\tleaq 8(%rsp), %rax\n"
    "\tret\n"
    ".size unit_caller_rsp, .-unit_caller_rsp\n");

uint32_t unit_get_mxcsr(void)
{
    uint32_t v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}

void unit_set_mxcsr(uint32_t v) { __asm__ volatile("ldmxcsr %0" : : "m"(v)); }

uint16_t unit_get_x87cw(void)
{
    uint16_t v;
    __asm__ volatile("fnstcw %0" : "=m"(v));
    return v;
}

void unit_set_x87cw(uint16_t v) { __asm__ volatile("fldcw %0" : : "m"(v)); }
