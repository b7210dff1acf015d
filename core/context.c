#include "context.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ASSERT_OFFSET(field, value) \
    _Static_assert(offsetof(ucontext_t, field) == (value), "ucontext_t layout: " #field)
ASSERT_OFFSET(uc_mcontext.gregs[REG_R12], COOP_UC_R12);
ASSERT_OFFSET(uc_mcontext.gregs[REG_R13], COOP_UC_R13);
ASSERT_OFFSET(uc_mcontext.gregs[REG_R14], COOP_UC_R14);
ASSERT_OFFSET(uc_mcontext.gregs[REG_R15], COOP_UC_R15);
ASSERT_OFFSET(uc_mcontext.gregs[REG_RDI], COOP_UC_RDI);
ASSERT_OFFSET(uc_mcontext.gregs[REG_RBP], COOP_UC_RBP);
ASSERT_OFFSET(uc_mcontext.gregs[REG_RBX], COOP_UC_RBX);
ASSERT_OFFSET(uc_mcontext.gregs[REG_RSP], COOP_UC_RSP);
ASSERT_OFFSET(uc_mcontext.gregs[REG_RIP], COOP_UC_RIP);
ASSERT_OFFSET(uc_mcontext.fpregs, COOP_UC_FPREGS);
ASSERT_OFFSET(__fpregs_mem, COOP_UC_FPREGS_MEM);
_Static_assert(offsetof(struct _libc_fpstate, mxcsr) == 24, "fpstate layout");

enum coop_switch_kind coop_switch_kind;
/* getcontext makes a system call; it is called once and its result copied into new contexts. */
static ucontext_t template_ctx;

void coop_context_init(enum coop_switch_kind kind)
{
    coop_switch_kind = kind;
    getcontext(&template_ctx);
}

void coop_context_make(ucontext_t *ctx, void *stack, size_t size, void *arg)
{
    memcpy(ctx, &template_ctx, sizeof *ctx);
    ctx->uc_mcontext.fpregs = &ctx->__fpregs_mem;
    ctx->uc_link = NULL;
    ctx->uc_stack.ss_sp = stack;
    ctx->uc_stack.ss_size = size;
    ctx->uc_stack.ss_flags = 0;
    makecontext(ctx, coop_context_entry, 0);
    /* The first argument register: switch.S and setcontext both load it. */
    ctx->uc_mcontext.gregs[REG_RDI] = (greg_t)(uintptr_t)arg;
}
