/*
 * switch [-m yield|asm|ucontext] [-n OPS] [-t SECONDS]: the cost of one context switch.
 *
 *   yield     two threads hand a turn to each other, each waiting for it with sched_yield().
 *             Natively the process is pinned to one CPU first, so that every hand-off is a
 *             kernel switch between the two threads (on two CPUs they would just spin). Under
 *             coop the threads are greenlets of one OS thread and each sched_yield() is one
 *             greenlet switch. Reports ns per hand-off and the sched_yield() calls per
 *             hand-off (1.00 when every yield reached the other thread).
 *   asm       the register-only reference: a minimal x86-64 switch (callee-saved registers
 *             and the stack pointer, nothing else) between two stacks of this program.
 *   ucontext  the same two stacks switched with glibc's swapcontext(), which also saves and
 *             restores the signal mask with a system call.
 *
 * Without -m, every mode runs. Each line: bench=switch_MODE ns_per_op=X ops=N ...
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <ucontext.h>

enum { REF_STACK_SIZE = 256 * 1024, CLOCK_EVERY = 1024 };

/* --- yield: two threads, one turn --- */

static _Atomic int turn;
static _Atomic bool stop, go;
static long handoffs, max_handoffs;
static uint64_t deadline_ns;
static _Atomic long yields;

static void *player(void *arg)
{
    int me = (int)(intptr_t)arg;
    long my_yields = 0;

    while (!atomic_load(&go))
        sched_yield();
    for (;;) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != me) {
            sched_yield();
            my_yields++;
        }
        if (atomic_load_explicit(&stop, memory_order_relaxed)) {
            atomic_store_explicit(&turn, 1 - me, memory_order_release);
            break;
        }
        /* Only the thread that has the turn touches handoffs. */
        handoffs++;
        if (handoffs >= max_handoffs || (handoffs % CLOCK_EVERY == 0 && now_ns() >= deadline_ns))
            atomic_store_explicit(&stop, true, memory_order_relaxed);
        atomic_store_explicit(&turn, 1 - me, memory_order_release);
    }
    atomic_fetch_add(&yields, my_yields);
    return NULL;
}

static void bench_yield(const struct bench_options *o)
{
    pthread_t threads[2];
    cpu_set_t one;
    uint64_t start, ns;
    char extra[128];
    int err;

    /* Natively: both threads on the CPU this one runs on. Under coop: one OS thread anyway. */
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0)
        die_errno("sched_setaffinity");
    max_handoffs = o->ops;
    for (int i = 0; i < 2; i++)
        if ((err = pthread_create(&threads[i], NULL, player, (void *)(intptr_t)i)) != 0)
            die("pthread_create: %s", strerror(err));
    start = now_ns();
    deadline_ns = start + (uint64_t)(o->seconds * 1e9);
    atomic_store(&go, true);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    ns = now_ns() - start;
    snprintf(extra, sizeof extra, "yields_per_handoff=%.2f",
             (double)atomic_load(&yields) / (double)handoffs);
    bench_report("switch_yield", handoffs, ns, extra);
}

/* --- asm: the register-only reference --- */

/*
 * void ref_switch(void **save_sp, void *load_sp): pushes the callee-saved registers on the
 * current stack, saves its pointer, loads the other one and pops that context's registers;
 * ret then continues where that context called ref_switch (or at its entry, first time).
 */
void ref_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl ref_switch\n"
        ".hidden ref_switch\n"
        ".type ref_switch, @function\n"
        "ref_switch:\n"
        "    endbr64\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size ref_switch, .-ref_switch\n");

static void *main_sp, *co_sp;

static __attribute__((noreturn)) void ref_entry(void)
{
    for (;;)
        ref_switch(&co_sp, main_sp);
}

static void *ref_stack(void)
{
    void *stack = mmap(NULL, REF_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

    if (stack == MAP_FAILED)
        die_errno("mmap");
    return stack;
}

static void asm_batch(void *arg, long n)
{
    (void)arg;
    for (long i = 0; i < n; i += 2)
        ref_switch(&main_sp, co_sp);
}

static void bench_asm(const struct bench_options *o)
{
    char *stack = ref_stack();
    /* Six registers, then ref_entry as the return address, then a fake caller's; ref_entry
     * starts with rsp = 8 mod 16, as after a call. */
    uint64_t *sp = (uint64_t *)(stack + REF_STACK_SIZE) - 8;
    uint64_t ns;
    long ops;

    memset(sp, 0, 8 * sizeof *sp);
    sp[6] = (uint64_t)(uintptr_t)ref_entry;
    co_sp = sp;
    ops = bench_loop(o, asm_batch, NULL, &ns);
    bench_report("switch_asm", ops + ops % 2, ns, NULL);
}

/* --- ucontext: glibc's swapcontext --- */

static ucontext_t main_uc, co_uc;

static void uc_entry(void)
{
    for (;;)
        swapcontext(&co_uc, &main_uc);
}

static void uc_batch(void *arg, long n)
{
    (void)arg;
    for (long i = 0; i < n; i += 2)
        swapcontext(&main_uc, &co_uc);
}

static void bench_ucontext(const struct bench_options *o)
{
    uint64_t ns;
    long ops;

    if (getcontext(&co_uc) != 0)
        die_errno("getcontext");
    co_uc.uc_stack.ss_sp = ref_stack();
    co_uc.uc_stack.ss_size = REF_STACK_SIZE;
    co_uc.uc_link = NULL;
    makecontext(&co_uc, uc_entry, 0);
    ops = bench_loop(o, uc_batch, NULL, &ns);
    bench_report("switch_ucontext", ops + ops % 2, ns, NULL);
}

int main(int argc, char **argv)
{
    struct bench_options o =
        bench_parse(argc, argv, 1000000000, "switch [-m yield|asm|ucontext] [-n OPS] [-t SECONDS]");

    /* The references first: the yield mode pins the process to one CPU. */
    if (bench_wants(&o, "asm"))
        bench_asm(&o);
    if (bench_wants(&o, "ucontext"))
        bench_ucontext(&o);
    if (bench_wants(&o, "yield"))
        bench_yield(&o);
    return 0;
}
