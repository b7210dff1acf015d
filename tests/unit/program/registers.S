/*
 * unit_program_spin_with_live_registers(flag %rdi, seed %rsi, out %rdx): every general
 * register but rsp, xmm0..xmm15 and the x87 stack's top hold known values while it spins,
 * so that a preemption that failed to restore any of them shows in *out. Its unwind
 * information is exact at every instruction: the core unwinds from inside the loop.
 */
	.text
	.globl unit_program_spin_with_live_registers
	.type unit_program_spin_with_live_registers, @function
unit_program_spin_with_live_registers:
	.cfi_startproc
	endbr64
	.irp reg, rbx, rbp, r12, r13, r14, r15, rdx, rdi
	pushq %\reg
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset \reg, 0
	.endr
	/* xmm i = { seed + 0x100 + i, seed + 0x200 + i } */
	.irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	leaq 0x100+\i(%rsi), %rax
	movq %rax, %xmm\i
	leaq 0x200+\i(%rsi), %rax
	pinsrq $1, %rax, %xmm\i
	.endr
	fldpi
	leaq 1(%rsi), %rax
	leaq 2(%rsi), %rbx
	leaq 3(%rsi), %rcx
	leaq 4(%rsi), %rdx
	leaq 6(%rsi), %rbp
	leaq 8(%rsi), %r8
	leaq 9(%rsi), %r9
	leaq 10(%rsi), %r10
	leaq 11(%rsi), %r11
	leaq 12(%rsi), %r12
	leaq 13(%rsi), %r13
	leaq 14(%rsi), %r14
	leaq 15(%rsi), %r15
	leaq 5(%rsi), %rsi
1:	cmpl $0, (%rdi)
	je 1b
	pushq %rax
	.cfi_adjust_cfa_offset 8
	movq 16(%rsp), %rax             /* out, pushed from rdx */
	movq %rbx, 8(%rax)
	movq %rcx, 16(%rax)
	movq %rdx, 24(%rax)
	movq %rsi, 32(%rax)
	movq %rdi, 40(%rax)
	movq %rbp, 48(%rax)
	movq %r8, 56(%rax)
	movq %r9, 64(%rax)
	movq %r10, 72(%rax)
	movq %r11, 80(%rax)
	movq %r12, 88(%rax)
	movq %r13, 96(%rax)
	movq %r14, 104(%rax)
	movq %r15, 112(%rax)
	popq %rbx
	.cfi_adjust_cfa_offset -8
	movq %rbx, 0(%rax)
	.irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	movdqu %xmm\i, 120+16*\i(%rax)
	.endr
	fstpt 376(%rax)
	addq $16, %rsp                  /* flag and out */
	.cfi_adjust_cfa_offset -16
	.irp reg, r15, r14, r13, r12, rbp, rbx
	popq %\reg
	.cfi_adjust_cfa_offset -8
	.cfi_restore \reg
	.endr
	ret
	.cfi_endproc
	.size unit_program_spin_with_live_registers, .-unit_program_spin_with_live_registers

	.section .note.GNU-stack,"",@progbits
