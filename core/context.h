/* Execution contexts: a ucontext_t per greenlet, switched without system calls. */
#ifndef COOP_CONTEXT_H
#define COOP_CONTEXT_H

/* Offsets into ucontext_t (x86-64 glibc) used by switch.S; context.c asserts them. */
#define COOP_UC_R12 72
#define COOP_UC_R13 80
#define COOP_UC_R14 88
#define COOP_UC_R15 96
#define COOP_UC_RDI 104
#define COOP_UC_RBP 120
#define COOP_UC_RBX 128
#define COOP_UC_RSP 160
#define COOP_UC_RIP 168
#define COOP_UC_FPREGS 224
#define COOP_UC_FPREGS_MEM 424
#define COOP_UC_MXCSR (COOP_UC_FPREGS_MEM + 24)

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

enum coop_switch_kind { COOP_SWITCH_FAST, COOP_SWITCH_UCONTEXT };

void coop_context_init(enum coop_switch_kind kind);

/* Prepares ctx to start coop_context_entry() on the given stack; arg is what
 * coop_greenlet_main receives. */
void coop_context_make(ucontext_t *ctx, void *stack, size_t size, void *arg);

extern enum coop_switch_kind coop_switch_kind;

/* Assembly (switch.S). */
void coop_context_switch_fast(ucontext_t *from, ucontext_t *to);

/* Starts loading what a switch to ctx reads (every word switch.S restores), and the
 * top of the stack it resumes on; from any thread: the stack pointer may be stale (the
 * context still being saved elsewhere), and a prefetch never faults. */
static inline void coop_context_prefetch(const ucontext_t *ctx)
{
    static const unsigned short restored[] = { COOP_UC_R12, COOP_UC_RBX, COOP_UC_RSP, COOP_UC_RIP,
                                                COOP_UC_FPREGS_MEM, COOP_UC_MXCSR };
    for (size_t i = 0; i < sizeof restored / sizeof restored[0]; i++)
        __builtin_prefetch((const char *)ctx + restored[i], 1);
    uintptr_t sp = (uintptr_t)__atomic_load_n(&ctx->uc_mcontext.gregs[REG_RSP], __ATOMIC_RELAXED);
    for (uintptr_t line = 0; line < 3; line++)      /* the frames it returns through */
        __builtin_prefetch((const void *)(sp + 64 * line), 1);
}

/* Saves the running context into from and resumes to. */
static inline void coop_context_switch(ucontext_t *from, ucontext_t *to)
{
    if (coop_switch_kind == COOP_SWITCH_FAST)
        coop_context_switch_fast(from, to);
    else
        swapcontext(from, to);
}

/* The first function of every new context; defined by the greenlet layer, never returns. */
struct coop_greenlet;
void coop_greenlet_main(struct coop_greenlet *self) __attribute__((noreturn));

void coop_context_entry(void);      /* switch.S */

#endif

#endif
