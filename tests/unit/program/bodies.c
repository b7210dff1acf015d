/* The preemption tests' program code (see program.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "program.h"

unsigned long unit_program_spin(volatile int *flag)
{
    unsigned long looks = 0;
    while (!*flag)
        looks++;
    return looks;
}

int unit_program_spin_keeping_errno(volatile int *flag, int value)
{
    errno = value;
    unit_program_spin(flag);
    return errno;
}

bool unit_program_registers_intact(const struct unit_live_registers *out, volatile int *flag, uint64_t seed)
{
    static const int gpr_offset[15] = { 1, 2, 3, 4, 5, -1, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
    for (int i = 0; i < 15; i++) {
        uint64_t expected = gpr_offset[i] < 0 ? (uint64_t)(uintptr_t)flag : seed + (uint64_t)gpr_offset[i];
        if (out->gpr[i] != expected)
            return false;
    }
    for (int i = 0; i < 16; i++) {
        uint64_t halves[2] = { seed + 0x100 + (uint64_t)i, seed + 0x200 + (uint64_t)i };
        if (memcmp(out->xmm[i], halves, sizeof halves) != 0)
            return false;
    }
    long double pi = 3.14159265358979323846264338327950288L;
    long double st0;
    memcpy(&st0, out->st0, 10);
    return st0 == pi || (st0 - pi < 1e-18L && pi - st0 < 1e-18L);
}

void unit_program_spin_with_fp_control(volatile int *flag, uint32_t mxcsr, uint16_t x87cw, struct unit_fp_seen *seen)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
    __asm__ volatile("fldcw %0" : : "m"(x87cw));
    unit_program_spin(flag);
    __asm__ volatile("stmxcsr %0" : "=m"(seen->mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(seen->x87cw));
    seen->mxcsr &= ~0x3fu;
    volatile float one = 1.0f, three = 3.0f;
    seen->third = one / three;
}

unsigned long unit_program_spin_calling(volatile int *flag, void (*call)(void))
{
    unsigned long calls = 0;
    while (!*flag) {
        call();
        calls++;
    }
    return calls;
}

static volatile int *qsort_flag;
static bool (*qsort_give_up)(void);
static bool qsort_flag_seen;

static int compare_spinning(const void *a, const void *b)
{
    while (!*qsort_flag && !qsort_give_up())
        ;
    qsort_flag_seen = *qsort_flag != 0;
    return *(const int *)a - *(const int *)b;
}

bool unit_program_spin_inside_qsort(volatile int *flag, bool (*give_up)(void))
{
    int two[2] = { 2, 1 };
    qsort_flag = flag;
    qsort_give_up = give_up;
    qsort(two, 2, sizeof two[0], compare_spinning);
    return qsort_flag_seen;
}

size_t unit_program_stack_written_while_spinning(volatile int *flag, size_t depth)
{
    enum { PATTERN = 0xa5, SPARED = 512 };   /* this function's own red zone and calls */
    unsigned char *sp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    volatile unsigned char *lowest = sp - depth;
    for (size_t i = 0; i < depth - SPARED; i++)
        lowest[i] = PATTERN;
    while (!*flag)
        ;
    size_t i = 0;
    while (i < depth - SPARED && lowest[i] == PATTERN)
        i++;
    return depth - i;
}
