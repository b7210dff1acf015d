/*
 * Shared by the core's unit tests (build/unit_tests, linked with the core objects).
 *
 * Rules every test follows:
 * - The test body runs on the hub's main greenlet: it spawns, joins and waits like any
 *   program greenlet.
 * - No ck_assert inside a spawned greenlet or a real thread. Under CK_NOFORK a failed
 *   assertion longjmps to the runner's frame on the main stack, which would leave the hub
 *   believing that greenlet still runs. Greenlets record what they saw in plain variables;
 *   the test body asserts after joining them.
 * - Every test joins what it spawned: the checked teardown asserts that no program
 *   greenlet is left alive (coop_alone()).
 */
#ifndef UNIT_H
#define UNIT_H

#include <check.h>
#include <stdint.h>

#include "../../core/coop.h"
#include "../../core/internal.h"

#define MS(n) ((int64_t)(n) * 1000000LL)

Suite *context_suite(void);
Suite *greenlet_suite(void);
Suite *timer_suite(void);
Suite *fdwait_suite(void);
Suite *park_suite(void);
Suite *stack_suite(void);
Suite *offload_suite(void);
Suite *fork_suite(void);
Suite *regressions_suite(void);
Suite *preempt_suite(void);
Suite *threadstate_suite(void);
Suite *sched_suite(void);

/* Spawns with a default, guarded stack (the shim's default attributes); aborts on error. */
struct coop_greenlet *unit_spawn(void *(*fn)(void *), void *arg);
struct coop_greenlet *unit_spawn_attr(void *(*fn)(void *), void *arg, struct coop_spawn_attr attr);
/* Joins with no deadline and returns the result; records a failure if the join fails. */
void *unit_join(struct coop_greenlet *g);

/* The process that called coop_init: the runner. */
extern pid_t unit_runner_pid;

/* Runs body(arg) in a forked child that first renews its hub (coop_fork_child); the child
 * exits 0 when body returns. Returns the child's wait status; kills it after timeout_ms
 * (UNIT_CHILD_GUARD_MS: a hang guard, not a judgement of speed). With err != NULL, the
 * child's stderr is collected there (NUL-terminated). */
#define UNIT_CHILD_GUARD_MS 30000
int unit_run_child(void (*body)(void *), void *arg, int timeout_ms, char *err, size_t err_len);

/* Whether greenlets run on one hub (COOP_HUBS=1): a queue's order is then the order they
 * run in. make test runs the unit tests with one hub and with two. */
static inline bool unit_one_hub(void) { return coop_sched_regular_hubs() == 1; }

/* Handoffs so far. In this binary every greenlet's code is coop's, which is never preempted,
 * so a greenlet that keeps its hub a few milliseconds (a loaded machine, a sanitizer) while
 * others wait gets its hub's work handed to a spare: on one hub, greenlets then run on two
 * OS threads, and two heaps fire. */
static inline uint64_t unit_handoffs(void)
{
    struct coop_sched_stats s;
    coop_sched_stats(&s);
    return s.handoffs;
}

/* Yields until g is in a wait of that kind and has left its hub: the wait is registered
 * (an fd linked, a parker queued), so a wake, a nudge or a close from now on finds it,
 * whichever hub it ran on. On several hubs, a flag g sets before its wait does not say that. */
void unit_wait_in(struct coop_greenlet *g, enum coop_wait_kind kind);
/* unit_wait_in a park (coop_park). */
void unit_wait_parked(struct coop_greenlet *g);

/* Yields until *flag is nonzero (or aborts the test after 60 s of yielding: a hang guard). */
void unit_yield_until(volatile int *flag);

/* The test case fixture: a forked test child renews its hub (coop_fork_child); no
 * program greenlet may outlive a test. */
void unit_checked_setup(void);
void unit_checked_teardown(void);
TCase *unit_tcase(const char *name);

/* switch.S-independent helpers in assembly (util.c):
 * unit_call_with_regs sets rbx, rbp, r12..r15 to seed+0..5, calls fn(arg), and stores the
 * six registers as found after the call into out[0..5]. */
void unit_call_with_regs(void (*fn)(void *), void *arg, uint64_t seed, uint64_t out[6]);
/* The caller's stack pointer at the call instruction (16-byte aligned under the ABI). */
uintptr_t unit_caller_rsp(void);
uint32_t unit_get_mxcsr(void);
void unit_set_mxcsr(uint32_t v);
uint16_t unit_get_x87cw(void);
void unit_set_x87cw(uint16_t v);

#endif
