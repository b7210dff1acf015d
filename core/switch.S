/*
 * The register-only context switch. glibc's swapcontext also saves the signal mask, which
 * costs an rt_sigprocmask system call per switch; a greenlet switch is a function call, so
 * the System V ABI only asks us to keep the callee-saved registers, the stack pointer, and
 * the MXCSR and x87 control words. They are stored in the ucontext_t's own fields, so gdb
 * and libunwind read a parked greenlet exactly as they read one saved by swapcontext.
 */
#include "context.h"

	.text
	.globl coop_context_switch_fast
	.hidden coop_context_switch_fast
	.type coop_context_switch_fast, @function
/* void coop_context_switch_fast(ucontext_t *from %rdi, ucontext_t *to %rsi) */
coop_context_switch_fast:
	.cfi_startproc
	movq %rbx, COOP_UC_RBX(%rdi)
	movq %rbp, COOP_UC_RBP(%rdi)
	movq %r12, COOP_UC_R12(%rdi)
	movq %r13, COOP_UC_R13(%rdi)
	movq %r14, COOP_UC_R14(%rdi)
	movq %r15, COOP_UC_R15(%rdi)
	movq (%rsp), %rax
	movq %rax, COOP_UC_RIP(%rdi)
	leaq 8(%rsp), %rax
	movq %rax, COOP_UC_RSP(%rdi)
	leaq COOP_UC_FPREGS_MEM(%rdi), %rax
	movq %rax, COOP_UC_FPREGS(%rdi)
	fnstcw COOP_UC_FPREGS_MEM(%rdi)
	stmxcsr COOP_UC_MXCSR(%rdi)

	movq COOP_UC_RBX(%rsi), %rbx
	movq COOP_UC_RBP(%rsi), %rbp
	movq COOP_UC_R12(%rsi), %r12
	movq COOP_UC_R13(%rsi), %r13
	movq COOP_UC_R14(%rsi), %r14
	movq COOP_UC_R15(%rsi), %r15
	fldcw COOP_UC_FPREGS_MEM(%rsi)
	ldmxcsr COOP_UC_MXCSR(%rsi)
	movq COOP_UC_RSP(%rsi), %rsp
	/* %rdi carries makecontext's first argument into a context's first run. */
	movq COOP_UC_RDI(%rsi), %rdi
	/* A return, not a jump: the call that entered here pushed a return prediction,
	 * and only a ret consumes it; a jmp would leave every later return of the
	 * resumed greenlet mispredicted. */
	pushq COOP_UC_RIP(%rsi)
	ret
	.cfi_endproc
	.size coop_context_switch_fast, .-coop_context_switch_fast

	.globl coop_context_entry
	.hidden coop_context_entry
	.type coop_context_entry, @function
/*
 * Where every greenlet starts. The undefined return address tells unwinders (libunwind,
 * gdb) that the call chain ends here instead of wandering into makecontext's trampoline.
 */
coop_context_entry:
	.cfi_startproc
	.cfi_undefined rip
	xorl %ebp, %ebp
	andq $-16, %rsp
	/* %rdi: the greenlet, from coop_context_make */
	call coop_greenlet_main
	ud2
	.cfi_endproc
	.size coop_context_entry, .-coop_context_entry

	.section .note.GNU-stack,"",@progbits
