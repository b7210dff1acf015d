/*
 * "Program" code for the preemption tests (test_preempt.c), built into
 * build/libunit_program.so. In build/unit_tests the core is part of the executable, so the
 * core counts every frame of the executable as its own and never preempts there: the loops
 * that must be preempted live in this library instead, which the core sees as a program's.
 */
#ifndef UNIT_PROGRAM_H
#define UNIT_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Spins until *flag; returns how many times it looked. */
unsigned long unit_program_spin(volatile int *flag);

/* Sets errno to value, spins until *flag, returns errno as it is then. */
int unit_program_spin_keeping_errno(volatile int *flag, int value);

/* What registers held after a spin (registers.S): rax rbx rcx rdx rsi rdi rbp r8..r15, then
 * xmm0..xmm15, then the x87 stack's top (80 bits). */
struct unit_live_registers {
    uint64_t gpr[15];
    uint8_t xmm[16][16];
    uint8_t st0[16];
};
/* Loads every register with a value made from seed (rdi keeps flag; st0 gets pi), spins
 * until *flag, and stores what the registers hold then. */
void unit_program_spin_with_live_registers(volatile int *flag, uint64_t seed, struct unit_live_registers *out);
/* Whether out holds what unit_program_spin_with_live_registers loaded for seed and flag. */
bool unit_program_registers_intact(const struct unit_live_registers *out, volatile int *flag, uint64_t seed);

/* Loads MXCSR and the x87 control word, spins until *flag, then reads them back (MXCSR's
 * exception flags left out) and computes 1.0f / 3.0f under them. */
struct unit_fp_seen { uint32_t mxcsr; uint16_t x87cw; float third; };
void unit_program_spin_with_fp_control(volatile int *flag, uint32_t mxcsr, uint16_t x87cw, struct unit_fp_seen *seen);

/* Spins until *flag, calling call() each time round (in the tests, code of the executable:
 * the stand-in for an interposed call). */
unsigned long unit_program_spin_calling(volatile int *flag, void (*call)(void));

/* Sorts two ints with qsort, whose comparator spins until *flag or give_up() (libc's frames
 * are then below the spinning one); returns whether *flag ended the spin. */
bool unit_program_spin_inside_qsort(volatile int *flag, bool (*give_up)(void));

/* Fills `depth` bytes below the stack pointer with a pattern, spins until *flag, and
 * returns how deep below the stack pointer the pattern was overwritten meanwhile. */
size_t unit_program_stack_written_while_spinning(volatile int *flag, size_t depth);

#endif
