/*
 * Context switching: coop_context_switch_fast on raw contexts (made with getcontext and
 * makecontext, so they do not start in the greenlet layer), coop_context_switch with both
 * kinds, and through greenlets under both kinds: callee-saved registers, the MXCSR and x87
 * control words, errno, the stack alignment of a new greenlet, and the signal mask (the OS
 * thread's with both kinds).
 */
#include <errno.h>
#include <fenv.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#define RAW_STACK (64 * 1024)
#define MXCSR_RC 0x6000u
#define MXCSR_FLAGS 0x3fu          /* exception status bits: arithmetic may set them */
#define X87_RC 0x0c00u

static int usr2_blocked(void)
{
    sigset_t s;
    pthread_sigmask(SIG_BLOCK, NULL, &s);
    return sigismember(&s, SIGUSR2);
}

static void block_usr2(int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(how, &s, NULL);
}

/* ---------------------------------------------------------------- raw contexts */

static ucontext_t raw_main, raw_co;
static volatile int raw_count, raw_arg_seen;

static void raw_make(void (*fn)(void), char *stack, int argc, int arg)
{
    ck_assert_int_eq(getcontext(&raw_co), 0);
    raw_co.uc_stack.ss_sp = stack;
    raw_co.uc_stack.ss_size = RAW_STACK;
    raw_co.uc_link = NULL;
    if (argc == 1)
        makecontext(&raw_co, fn, 1, arg);
    else
        makecontext(&raw_co, fn, 0);
}

static void raw_pingpong_entry(int arg)
{
    raw_arg_seen = arg;
    for (;;) {
        raw_count++;
        coop_context_switch_fast(&raw_co, &raw_main);
    }
}

START_TEST(test_fast_switch_raw_pingpong)
{
    char *stack = malloc(RAW_STACK);
    raw_count = 0;
    raw_arg_seen = 0;
    raw_make((void (*)(void))raw_pingpong_entry, stack, 1, 4242);
    for (int i = 0; i < 1000; i++) {
        coop_context_switch_fast(&raw_main, &raw_co);
        ck_assert_int_eq(raw_count, i + 1);
    }
    /* The first switch carries makecontext's first argument in %rdi. */
    ck_assert_int_eq(raw_arg_seen, 4242);
    free(stack);
}
END_TEST

static uint64_t raw_co_out[6];

static void raw_switch_back(void *unused)
{
    (void)unused;
    coop_context_switch_fast(&raw_co, &raw_main);
}

static void raw_regs_entry(void)
{
    for (;;)
        unit_call_with_regs(raw_switch_back, NULL, 0xc0c0c0c000000000ull, raw_co_out);
}

static void raw_switch_to_co(void *unused)
{
    (void)unused;
    coop_context_switch_fast(&raw_main, &raw_co);
}

START_TEST(test_fast_switch_keeps_callee_saved)
{
    char *stack = malloc(RAW_STACK);
    raw_make(raw_regs_entry, stack, 0, 0);
    uint64_t out[6];
    /* 1st: co starts and sets its registers; 2nd: co's call returns with them. */
    unit_call_with_regs(raw_switch_to_co, NULL, 0x1111000000000000ull, out);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq(out[i], 0x1111000000000000ull + (uint64_t)i);
    unit_call_with_regs(raw_switch_to_co, NULL, 0x2222000000000000ull, out);
    for (int i = 0; i < 6; i++) {
        ck_assert_uint_eq(out[i], 0x2222000000000000ull + (uint64_t)i);
        ck_assert_uint_eq(raw_co_out[i], 0xc0c0c0c000000000ull + (uint64_t)i);
    }
    free(stack);
}
END_TEST

static volatile uint32_t raw_co_mxcsr;
static volatile uint16_t raw_co_cw;

static void raw_fpu_entry(void)
{
    /* Round toward +inf, flush-to-zero; x87: round up, 24-bit precision. */
    unit_set_mxcsr(0x1f80u | 0x4000u | 0x8000u);
    unit_set_x87cw(0x007f | 0x0800);
    for (;;) {
        coop_context_switch_fast(&raw_co, &raw_main);
        raw_co_mxcsr = unit_get_mxcsr();
        raw_co_cw = unit_get_x87cw();
    }
}

START_TEST(test_fast_switch_keeps_fpu_control)
{
    char *stack = malloc(RAW_STACK);
    uint32_t mxcsr0 = unit_get_mxcsr();
    uint16_t cw0 = unit_get_x87cw();
    raw_make(raw_fpu_entry, stack, 0, 0);
    /* Round toward -inf here; x87: round toward zero, 53-bit precision. */
    unit_set_mxcsr(0x1f80u | 0x2000u);
    unit_set_x87cw(0x027f | 0x0c00);
    for (int i = 0; i < 3; i++) {
        coop_context_switch_fast(&raw_main, &raw_co);
        ck_assert_uint_eq(unit_get_mxcsr() & ~MXCSR_FLAGS, 0x1f80u | 0x2000u);
        ck_assert_uint_eq(unit_get_x87cw(), 0x027f | 0x0c00);
        if (i > 0) {
            ck_assert_uint_eq(raw_co_mxcsr & ~MXCSR_FLAGS, 0x1f80u | 0x4000u | 0x8000u);
            ck_assert_uint_eq(raw_co_cw, 0x007f | 0x0800);
        }
    }
    unit_set_mxcsr(mxcsr0);
    unit_set_x87cw(cw0);
    free(stack);
}
END_TEST

static volatile int raw_co_saw_blocked;

static void raw_mask_entry(void)
{
    for (;;) {
        raw_co_saw_blocked = usr2_blocked();
        coop_context_switch(&raw_co, &raw_main);
    }
}

/* _i: 0 the fast switch, 1 swapcontext. Only swapcontext carries a signal mask. */
START_TEST(test_switch_kind_signal_mask)
{
    enum coop_switch_kind kind = _i == 0 ? COOP_SWITCH_FAST : COOP_SWITCH_UCONTEXT;
    char *stack = malloc(RAW_STACK);
    block_usr2(SIG_UNBLOCK);
    raw_make(raw_mask_entry, stack, 0, 0);         /* its saved mask: SIGUSR2 open */
    coop_context_init(kind);
    block_usr2(SIG_BLOCK);
    raw_co_saw_blocked = -1;
    coop_context_switch(&raw_main, &raw_co);
    int main_blocked_after = usr2_blocked();
    block_usr2(SIG_UNBLOCK);
    coop_context_init(COOP_SWITCH_FAST);
    if (kind == COOP_SWITCH_FAST) {
        ck_assert_int_eq(raw_co_saw_blocked, 1);   /* the thread's mask, untouched */
    } else {
        ck_assert_int_eq(raw_co_saw_blocked, 0);   /* the context's own mask */
        ck_assert_int_eq(main_blocked_after, 1);   /* and main's came back with it */
    }
    ck_assert_int_eq(main_blocked_after, 1);
    free(stack);
}
END_TEST

START_TEST(test_context_make_layout)
{
    static char stack[RAW_STACK] __attribute__((aligned(16)));
    ucontext_t ctx;
    memset(&ctx, 0xa5, sizeof ctx);
    coop_context_make(&ctx, stack, sizeof stack, stack);
    ck_assert_ptr_eq(ctx.uc_link, NULL);
    ck_assert_ptr_eq((void *)ctx.uc_mcontext.gregs[REG_RDI], stack);   /* the first run's argument */
    ck_assert_ptr_eq(ctx.uc_stack.ss_sp, stack);
    ck_assert_uint_eq(ctx.uc_stack.ss_size, sizeof stack);
    ck_assert_ptr_eq(ctx.uc_mcontext.fpregs, &ctx.__fpregs_mem);
    ck_assert_uint_eq((uintptr_t)ctx.uc_mcontext.gregs[REG_RIP], (uintptr_t)coop_context_entry);
    uintptr_t sp = (uintptr_t)ctx.uc_mcontext.gregs[REG_RSP];
    ck_assert(sp > (uintptr_t)stack && sp <= (uintptr_t)stack + sizeof stack);
    /* The control words come from the template, not from the 0xa5 garbage. */
    ck_assert_uint_eq(ctx.__fpregs_mem.mxcsr & ~MXCSR_FLAGS, unit_get_mxcsr() & ~MXCSR_FLAGS);
    ck_assert_uint_eq(ctx.__fpregs_mem.cwd, unit_get_x87cw());
}
END_TEST

/* ---------------------------------------------------------------- through greenlets */

static void kind_setup(int i) { coop_context_init(i == 0 ? COOP_SWITCH_FAST : COOP_SWITCH_UCONTEXT); }
static void kind_teardown(void) { coop_context_init(COOP_SWITCH_FAST); }

static char pp_log[4096];
static _Atomic int pp_len;

static void *pingpong_body(void *arg)
{
    char c = (char)(intptr_t)arg;
    for (int i = 0; i < 1000; i++) {
        pp_log[atomic_fetch_add(&pp_len, 1)] = c;
        coop_yield();
    }
    return arg;
}

START_TEST(test_greenlet_pingpong)
{
    kind_setup(_i);
    pp_len = 0;
    uint64_t handoffs = unit_handoffs();
    struct coop_greenlet *a = unit_spawn(pingpong_body, (void *)(intptr_t)'A');
    struct coop_greenlet *b = unit_spawn(pingpong_body, (void *)(intptr_t)'B');
    ck_assert_ptr_eq(unit_join(a), (void *)(intptr_t)'A');
    ck_assert_ptr_eq(unit_join(b), (void *)(intptr_t)'B');
    ck_assert_int_eq(pp_len, 2000);
    /* On one hub they alternate; on several (a spare's too) they may also run at once. */
    for (int i = 0; i < pp_len && unit_one_hub() && unit_handoffs() == handoffs; i++)
        ck_assert_msg(pp_log[i] == (i % 2 ? 'B' : 'A'), "switch %d ran %c", i, pp_log[i]);
}
END_TEST

struct regs_probe { uint64_t seed, out[6]; };

static void yield_20(void *unused)
{
    (void)unused;
    for (int i = 0; i < 20; i++)
        coop_yield();
}

static void *regs_body(void *arg)
{
    struct regs_probe *p = arg;
    unit_call_with_regs(yield_20, NULL, p->seed, p->out);
    return NULL;
}

static struct regs_probe rp[2];

static void join_regs_greenlets(void *unused)
{
    (void)unused;
    struct coop_greenlet *a = unit_spawn(regs_body, &rp[0]);
    struct coop_greenlet *b = unit_spawn(regs_body, &rp[1]);
    coop_join(a, NULL, COOP_NO_DEADLINE);
    coop_join(b, NULL, COOP_NO_DEADLINE);
}

START_TEST(test_greenlet_callee_saved)
{
    kind_setup(_i);
    rp[0] = (struct regs_probe){ .seed = 0xaaaa000000000000ull };
    rp[1] = (struct regs_probe){ .seed = 0xbbbb000000000000ull };
    uint64_t main_out[6];
    unit_call_with_regs(join_regs_greenlets, NULL, 0x3333000000000000ull, main_out);
    for (int i = 0; i < 6; i++) {
        ck_assert_uint_eq(rp[0].out[i], rp[0].seed + (uint64_t)i);
        ck_assert_uint_eq(rp[1].out[i], rp[1].seed + (uint64_t)i);
        ck_assert_uint_eq(main_out[i], 0x3333000000000000ull + (uint64_t)i);
    }
}
END_TEST

struct fpu_probe {
    int mode;                 /* fesetround argument */
    uint16_t pc;              /* x87 precision control bits */
    uint32_t mxcsr_extra;     /* FTZ / DAZ */
    int good_rounds;
    uint32_t mxcsr_seen;
    uint16_t cw_seen;
    double q;
    long double lq;
};

static uint32_t mxcsr_rc(int mode)
{
    switch (mode) {
    case FE_DOWNWARD: return 0x2000;
    case FE_UPWARD: return 0x4000;
    case FE_TOWARDZERO: return 0x6000;
    default: return 0;
    }
}

static void *fpu_body(void *arg)
{
    struct fpu_probe *p = arg;
    fesetround(p->mode);
    unit_set_x87cw((uint16_t)((unit_get_x87cw() & ~0x0300u) | p->pc));
    unit_set_mxcsr(unit_get_mxcsr() | p->mxcsr_extra);
    uint32_t want_mxcsr = unit_get_mxcsr() & ~MXCSR_FLAGS;
    uint16_t want_cw = unit_get_x87cw();
    for (int i = 0; i < 50; i++) {
        coop_yield();
        if (fegetround() == p->mode && (unit_get_mxcsr() & ~MXCSR_FLAGS) == want_mxcsr
            && unit_get_x87cw() == want_cw)
            p->good_rounds++;
    }
    p->mxcsr_seen = unit_get_mxcsr();
    p->cw_seen = unit_get_x87cw();
    volatile double one = 1.0, three = 3.0;
    p->q = one / three;                              /* SSE: follows MXCSR */
    volatile long double lone = 1.0L, lthree = 3.0L;
    p->lq = lone / lthree;                           /* x87: follows the control word */
    return NULL;
}

START_TEST(test_greenlet_fpu_control_per_greenlet)
{
    kind_setup(_i);
    uint32_t mxcsr0 = unit_get_mxcsr();
    uint16_t cw0 = unit_get_x87cw();
    ck_assert_int_eq(fegetround(), FE_TONEAREST);
    struct fpu_probe p[3] = {
        { .mode = FE_DOWNWARD, .pc = 0x0300, .mxcsr_extra = 0x8000 },
        { .mode = FE_UPWARD, .pc = 0x0300, .mxcsr_extra = 0x0040 },
        { .mode = FE_TOWARDZERO, .pc = 0x0200, .mxcsr_extra = 0 },
    };
    struct coop_greenlet *g[3];
    for (int i = 0; i < 3; i++)
        g[i] = unit_spawn(fpu_body, &p[i]);
    for (int i = 0; i < 3; i++)
        unit_join(g[i]);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(p[i].good_rounds, 50);
        ck_assert_uint_eq(p[i].mxcsr_seen & MXCSR_RC, mxcsr_rc(p[i].mode));
        ck_assert_uint_eq(p[i].mxcsr_seen & 0x8040u, p[i].mxcsr_extra);
        ck_assert_uint_eq(p[i].cw_seen & 0x0300u, p[i].pc);
        ck_assert_uint_eq(p[i].cw_seen & X87_RC, (uint16_t)(mxcsr_rc(p[i].mode) >> 3));
    }
    ck_assert(p[0].q < p[1].q);
    ck_assert(p[0].q == p[2].q);
    ck_assert(p[0].lq < p[1].lq);
    /* The main greenlet kept its own. */
    ck_assert_int_eq(fegetround(), FE_TONEAREST);
    ck_assert_uint_eq(unit_get_mxcsr() & ~MXCSR_FLAGS, mxcsr0 & ~MXCSR_FLAGS);
    ck_assert_uint_eq(unit_get_x87cw(), cw0);
}
END_TEST

struct errno_probe { int set, start, seen; };

static void *errno_body(void *arg)
{
    struct errno_probe *p = arg;
    p->start = errno;
    errno = p->set;
    for (int i = 0; i < 10; i++)
        coop_yield();
    p->seen = errno;
    return NULL;
}

START_TEST(test_greenlet_errno)
{
    kind_setup(_i);
    struct errno_probe p[2] = { { .set = EIO }, { .set = ENOSPC } };
    struct coop_greenlet *a = unit_spawn(errno_body, &p[0]);
    struct coop_greenlet *b = unit_spawn(errno_body, &p[1]);
    errno = EDOM;
    int ra = coop_join(a, NULL, COOP_NO_DEADLINE);
    int rb = coop_join(b, NULL, COOP_NO_DEADLINE);
    int main_errno = errno;
    ck_assert_int_eq(ra, 0);
    ck_assert_int_eq(rb, 0);
    ck_assert_int_eq(main_errno, EDOM);
    ck_assert_int_eq(p[0].start, 0);     /* a new greenlet starts with errno 0 */
    ck_assert_int_eq(p[1].start, 0);
    ck_assert_int_eq(p[0].seen, EIO);
    ck_assert_int_eq(p[1].seen, ENOSPC);
}
END_TEST

struct align_probe { uintptr_t rsp; void *base; size_t size; };

static void *align_body(void *arg)
{
    struct align_probe *p = arg;
    p->rsp = unit_caller_rsp();
    coop_greenlet_stack(coop_self(), &p->base, &p->size);
    return NULL;
}

START_TEST(test_greenlet_entry_alignment)
{
    kind_setup(_i);
    struct align_probe p = { 0 };
    unit_join(unit_spawn(align_body, &p));
    ck_assert_uint_eq(p.rsp % 16, 0);
    ck_assert(p.rsp > (uintptr_t)p.base && p.rsp < (uintptr_t)p.base + p.size);
}
END_TEST

static volatile int mask_a_blocked, mask_b_checked, mask_b_saw;

static void *mask_a(void *unused)
{
    (void)unused;
    block_usr2(SIG_BLOCK);
    mask_a_blocked = 1;
    unit_yield_until(&mask_b_checked);
    block_usr2(SIG_UNBLOCK);
    return NULL;
}

static void *mask_b(void *unused)
{
    (void)unused;
    unit_yield_until(&mask_a_blocked);
    mask_b_saw = usr2_blocked();
    mask_b_checked = 1;
    return NULL;
}

START_TEST(test_greenlet_signal_mask_of_the_thread)
{
    kind_setup(_i);
    block_usr2(SIG_UNBLOCK);
    mask_a_blocked = mask_b_checked = 0;
    mask_b_saw = -1;
    uint64_t handoffs = unit_handoffs();
    struct coop_greenlet *a = unit_spawn(mask_a, NULL);
    struct coop_greenlet *b = unit_spawn(mask_b, NULL);
    unit_join(a);
    unit_join(b);
    if (unit_handoffs() != handoffs)
        return;     /* they may have run on a spare's thread (unit.h) */
    /* The mask belongs to the OS thread, shared by its greenlets, with either switch:
     * swapcontext is given the thread's to set, read first, since no shim keeps each
     * greenlet's here. */
    ck_assert_int_eq(mask_b_saw, 1);
    ck_assert_int_eq(usr2_blocked(), 0);
}
END_TEST

Suite *context_suite(void)
{
    Suite *s = suite_create("context");
    TCase *raw = unit_tcase("raw");
    tcase_add_test(raw, test_fast_switch_raw_pingpong);
    tcase_add_test(raw, test_fast_switch_keeps_callee_saved);
    tcase_add_test(raw, test_fast_switch_keeps_fpu_control);
    tcase_add_loop_test(raw, test_switch_kind_signal_mask, 0, 2);
    tcase_add_test(raw, test_context_make_layout);
    suite_add_tcase(s, raw);

    /* Each test runs twice: _i 0 with the fast switch, 1 with swapcontext. */
    TCase *g = unit_tcase("greenlets");
    tcase_add_checked_fixture(g, NULL, kind_teardown);
    tcase_add_loop_test(g, test_greenlet_pingpong, 0, 2);
    tcase_add_loop_test(g, test_greenlet_callee_saved, 0, 2);
    tcase_add_loop_test(g, test_greenlet_fpu_control_per_greenlet, 0, 2);
    tcase_add_loop_test(g, test_greenlet_errno, 0, 2);
    tcase_add_loop_test(g, test_greenlet_entry_alignment, 0, 2);
    /* The OS thread's mask, which greenlets on other hubs' threads do not share. */
    if (unit_one_hub())
        tcase_add_loop_test(g, test_greenlet_signal_mask_of_the_thread, 0, 2);
    suite_add_tcase(s, g);
    return s;
}
