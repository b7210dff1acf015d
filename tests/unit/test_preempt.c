/*
 * Time-slice preemption (core/preempt.c). The loops preempted here are program code, in
 * build/libunit_program.so (tests/unit/program/): a greenlet that spins there can only give
 * way to another if it was preempted, so each test that completes proves a preemption by
 * construction, and then checks what the preempted greenlet found on resuming: every
 * register, the FPU control words, errno, the signal mask and alternate stack its OS thread
 * had meanwhile. main.c runs the tests with a 2 ms slice (COOP_PREEMPT_MS).
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "program/program.h"
#include "unit.h"

/* --- who was preempted, and how (the preemption hook) --- */

static struct coop_greenlet *_Atomic watched;
static _Atomic int by_signal, at_call;

static void count_preemption(struct coop_greenlet *g, bool call)
{
    if (g == atomic_load(&watched))
        atomic_fetch_add(call ? &at_call : &by_signal, 1);
}

static void watch(struct coop_greenlet *g)
{
    atomic_store(&by_signal, 0);
    atomic_store(&at_call, 0);
    atomic_store(&watched, g);
    coop_set_preempt_hook(count_preemption);
}

/* --- greenlets of the executable that drive the program's loops --- */

static volatile int flag;

static struct coop_hub *_Atomic setter_hub, *_Atomic spinner_hub;

static void *set_flag(void *unused)
{
    (void)unused;
    atomic_store(&setter_hub, coop_thread.hub);
    flag = 1;
    return NULL;
}

static _Atomic int spinning;

static void *spin(void *unused)
{
    (void)unused;
    atomic_fetch_add(&spinning, 1);
    return (void *)unit_program_spin(&flag);
}

/* One spinner per hub: once they all spin, every hub is taken until one of them is
 * preempted. This greenlet sleeps meanwhile, so it sees them all spin only after a spinner
 * (or, had two started on one hub, the first of them) was preempted; the setter it spawns
 * then runs only once a spinner is preempted again. (Spawned together with the spinners,
 * the setter could have been stolen with one of them and run first.) */
START_TEST(test_spinner_gives_way_to_the_greenlet_it_waits_for)
{
    flag = 0;
    atomic_store(&spinning, 0);
    uint64_t before = coop_preemptions();
    struct coop_greenlet *spinners[COOP_MAX_REGULAR_HUBS];
    int n = coop_sched_regular_hubs();
    for (int i = 0; i < n; i++)
        spinners[i] = unit_spawn(spin, NULL);
    while (atomic_load(&spinning) < n)
        coop_sleep_until(coop_now() + MS(1));
    ck_assert_uint_ge(coop_preemptions(), before + 1);
    struct coop_greenlet *setter = unit_spawn(set_flag, NULL);
    for (int i = 0; i < n; i++)
        unit_join(spinners[i]);
    unit_join(setter);
    ck_assert_uint_ge(coop_preemptions(), before + 1);
}
END_TEST

static void *spin_with_registers(void *seed)
{
    static struct unit_live_registers out;
    memset(&out, 0, sizeof out);
    unit_program_spin_with_live_registers(&flag, (uint64_t)(uintptr_t)seed, &out);
    return (void *)(uintptr_t)unit_program_registers_intact(&out, &flag, (uint64_t)(uintptr_t)seed);
}

START_TEST(test_every_register_survives_a_preemption)
{
    flag = 0;
    struct coop_greenlet *spinner = unit_spawn(spin_with_registers, (void *)(uintptr_t)0x5eed0000);
    watch(spinner);
    struct coop_greenlet *setter = unit_spawn(set_flag, NULL);
    ck_assert_msg(unit_join(spinner) != NULL, "a general, SSE or x87 register changed across the preemption");
    unit_join(setter);
    ck_assert_int_ge(atomic_load(&by_signal), 1);
}
END_TEST

/* --- the FPU control words and errno: the preempted greenlet's, and the others' --- */

enum { ODD_MXCSR = 0x1f80 | 0x6000 | 0x8000 | 0x40, /* round toward zero, FTZ, DAZ */
       ODD_X87CW = 0x027f | 0x0c00 };               /* double precision, toward zero */

static struct unit_fp_seen fp_seen;
static uint32_t other_mxcsr;
static uint16_t other_x87cw;
static int errno_seen;

static void *spin_with_fp_control(void *unused)
{
    (void)unused;
    unit_program_spin_with_fp_control(&flag, ODD_MXCSR, ODD_X87CW, &fp_seen);
    return NULL;
}

static void *spin_with_errno(void *unused)
{
    (void)unused;
    errno_seen = unit_program_spin_keeping_errno(&flag, 4242);
    return NULL;
}

/* Runs while the others are preempted: its own FPU state must be the default one. */
static void *look_then_set_flag(void *unused)
{
    (void)unused;
    other_mxcsr = unit_get_mxcsr() & ~0x3fu;
    other_x87cw = unit_get_x87cw();
    errno = 77;
    flag = 1;
    return NULL;
}

START_TEST(test_fpu_control_and_errno_stay_each_greenlets_own)
{
    flag = 0;
    uint32_t default_mxcsr = unit_get_mxcsr() & ~0x3fu;
    uint16_t default_x87cw = unit_get_x87cw();
    struct coop_greenlet *fp = unit_spawn(spin_with_fp_control, NULL);
    struct coop_greenlet *err = unit_spawn(spin_with_errno, NULL);
    struct coop_greenlet *other = unit_spawn(look_then_set_flag, NULL);
    unit_join(fp);
    unit_join(err);
    unit_join(other);
    ck_assert_uint_eq(fp_seen.mxcsr, ODD_MXCSR);
    ck_assert_uint_eq(fp_seen.x87cw, ODD_X87CW);
    ck_assert_msg(fp_seen.third < 1.0f / 3.0f, "1/3 was not rounded toward zero: %a", fp_seen.third);
    ck_assert_uint_eq(other_mxcsr, default_mxcsr);
    ck_assert_uint_eq(other_x87cw, default_x87cw);
    ck_assert_int_eq(errno_seen, 4242);
}
END_TEST

/* --- the signal mask and the alternate stack are the OS thread's --- */

static sigset_t mask_in_handler, mask_after;
static stack_t altstack_after;
static char other_altstack[64 * 1024];

static void *spin_then_look(void *unused)
{
    (void)unused;
    unit_program_spin(&flag);
    pthread_sigmask(SIG_BLOCK, NULL, &mask_after);
    sigaltstack(NULL, &altstack_after);
    return NULL;
}

/* Switched to from inside the spinner's preemption handler. */
static void *change_mask_and_altstack(void *unused)
{
    (void)unused;
    pthread_sigmask(SIG_BLOCK, NULL, &mask_in_handler);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    stack_t ss = { .ss_sp = other_altstack, .ss_size = sizeof other_altstack };
    sigaltstack(&ss, NULL);
    flag = 1;
    return NULL;
}

START_TEST(test_mask_and_altstack_are_the_threads_after_a_preemption)
{
    flag = 0;
    sigset_t before;
    stack_t altstack_before;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    sigaltstack(NULL, &altstack_before);
    ck_assert(!sigismember(&before, SIGUSR2));
    struct coop_greenlet *spinner = unit_spawn(spin_then_look, NULL);
    struct coop_greenlet *changer = unit_spawn(change_mask_and_altstack, NULL);
    unit_join(spinner);
    unit_join(changer);
    /* The greenlet that ran inside the handler had the thread's mask: nothing more blocked. */
    for (int sig = 1; sig < NSIG; sig++)
        ck_assert_msg(sigismember(&mask_in_handler, sig) == sigismember(&before, sig),
                      "signal %d: blocked %d while preempted, %d before", sig,
                      sigismember(&mask_in_handler, sig), sigismember(&before, sig));
    /* sigreturn did not put back the mask or altstack of the moment of the preemption. */
    ck_assert(sigismember(&mask_after, SIGUSR2));
    ck_assert(!sigismember(&mask_after, COOP_PREEMPT_SIGNAL));
    ck_assert_ptr_eq(altstack_after.ss_sp, other_altstack);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    sigaltstack(&altstack_before, NULL);
}
END_TEST

/* --- a requeued greenlet goes behind the greenlets the hub's next poll wakes --- */

static int pipe_fds[2];

static void *wait_for_pipe_then_set_flag(void *unused)
{
    (void)unused;
    coop_wait_fd(pipe_fds[0], COOP_READ, COOP_NO_DEADLINE);
    flag = 1;
    return NULL;
}

START_TEST(test_preempted_greenlet_goes_behind_what_the_poll_wakes)
{
    flag = 0;
    ck_assert_int_eq(pipe(pipe_fds), 0);
    struct coop_greenlet *reader = unit_spawn(wait_for_pipe_then_set_flag, NULL);
    coop_yield();                                  /* the reader now waits for its fd */
    ck_assert_int_eq(write(pipe_fds[1], "x", 1), 1);
    /* The fd is ready, but the hub has not polled since: the spinner runs first. */
    struct coop_greenlet *spinner = unit_spawn(spin, NULL);
    watch(spinner);
    unit_join(spinner);
    unit_join(reader);
    /* Requeued in front of the reader, the spinner would have needed a second slice. */
    ck_assert_int_eq(atomic_load(&by_signal) + atomic_load(&at_call), 1);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}
END_TEST

/* --- where it is not safe --- */

/* The stand-in for an interposed call: coop's code (of this executable) for a while, so that
 * the signal finds the greenlet there, then the wrappers' check. */
static void interposed_call(void)
{
    for (int i = 0; i < 2000; i++)
        __builtin_ia32_pause();
    coop_preempt_point();
}

static void *spin_calling(void *unused)
{
    (void)unused;
    return (void *)unit_program_spin_calling(&flag, interposed_call);
}

/* Sets the flag once the spinner was preempted at a call, not (only) by the signal. */
static void *set_flag_after_a_preemption_at_call(void *unused)
{
    (void)unused;
    while (atomic_load(&at_call) == 0)
        coop_yield();
    flag = 1;
    return NULL;
}

START_TEST(test_refused_preemption_is_taken_at_the_next_interposed_call)
{
    flag = 0;
    struct coop_greenlet *spinner = unit_spawn(spin_calling, NULL);
    watch(spinner);
    struct coop_greenlet *setter = unit_spawn(set_flag_after_a_preemption_at_call, NULL);
    unit_join(spinner);
    unit_join(setter);
    ck_assert_int_ge(atomic_load(&at_call), 1);
}
END_TEST

static uint64_t refusals_at_start;

static bool refused_three_times(void) { return coop_preempt_refusals() >= refusals_at_start + 3; }

static uint64_t handoffs_so_far(void)
{
    struct coop_sched_stats s;
    coop_sched_stats(&s);
    return s.handoffs;
}

/* Runs spinner, which spins until the flag is set or three preemptions were refused, beside
 * a greenlet that sets the flag; returns what spinner returned: NULL if it was never
 * preempted (had it been, the setter would have run and ended the spin with the flag). A
 * handoff also lets the setter run, on a spare (the monitor saw the hub's thread asleep in
 * the kernel: a page fault served from disk on a busy machine), and so does a spare that an
 * earlier test's handoff started and that has not retired yet: a try in which the setter
 * ran on another hub than the spinner's, or with a handoff, does not count. */
/* Gives a spare that an earlier handoff started the time to retire (the monitor asks an
 * idle one at its next tick), so that the try has the spinner's hub alone; goes on after
 * a while in any case, the try then counting only if the setter stayed on that hub. */
static void let_spares_retire(void)
{
    for (int naps = 0; naps < 100; naps++) {
        struct coop_sched_stats s;
        coop_sched_stats(&s);
        if (s.spares_running == 0)
            return;
        coop_sleep_until(coop_now() + 10 * 1000000);
    }
}

static void *spin_until_refused_three_times(void *(*spinner)(void *))
{
    int with_handoff = 0;
    for (int attempt = 0;; attempt++) {
        ck_assert_msg(attempt < 10, "a handoff or another hub during every try (%d with a handoff)", with_handoff);
        let_spares_retire();
        uint64_t handoffs = handoffs_so_far();
        flag = 0;
        atomic_store(&setter_hub, NULL);
        refusals_at_start = coop_preempt_refusals();
        struct coop_greenlet *g = unit_spawn(spinner, NULL);
        watch(g);
        struct coop_greenlet *setter = unit_spawn(set_flag, NULL);
        void *flag_ended_it = unit_join(g);
        unit_join(setter);
        if (handoffs_so_far() != handoffs)
            with_handoff++;
        else if (atomic_load(&setter_hub) == atomic_load(&spinner_hub))
            return flag_ended_it;
    }
}

/* The comparator, called by libc's qsort, spins. */
static void *spin_inside_qsort(void *unused)
{
    (void)unused;
    atomic_store(&spinner_hub, coop_thread.hub);
    return (void *)(uintptr_t)unit_program_spin_inside_qsort(&flag, refused_three_times);
}

START_TEST(test_no_preemption_under_a_libc_frame)
{
    ck_assert_msg(spin_until_refused_three_times(spin_inside_qsort) == NULL,
                  "preempted under qsort's frames (%d by signal, %d at a call)", atomic_load(&by_signal),
                  atomic_load(&at_call));
    ck_assert_int_eq(atomic_load(&by_signal), 0);
    struct coop_hub *h = coop_thread.hub;
    uintptr_t at = atomic_load(&h->preempt.refusal_at);
    Dl_info info;
    ck_assert(dladdr((void *)at, &info) != 0);
    /* Under qsort's frames (libc's, or ASan's interceptor of it), or in coop's own code. */
    ck_assert_msg(strstr(info.dli_fname, "libc.so") != NULL || strstr(info.dli_fname, "libasan.so") != NULL
                      || strstr(info.dli_fname, "unit_tests") != NULL,
                  "refused at %s", info.dli_fname);
}
END_TEST

/* The executable's code stands for coop's here: it reads the clock as coop_now does, with
 * its locks held, and no program frame lies beyond to refuse the preemption. */
static void *poll_the_clock_as_coop_does(void *unused)
{
    (void)unused;
    atomic_store(&spinner_hub, coop_thread.hub);
    struct timespec now;
    while (!flag && !refused_three_times())
        clock_gettime(CLOCK_MONOTONIC, &now);
    return (void *)(uintptr_t)flag;
}

START_TEST(test_no_preemption_in_a_clock_read_of_coops_own)
{
    ck_assert_msg(spin_until_refused_three_times(poll_the_clock_as_coop_does) == NULL,
                  "preempted inside a clock read called by coop's code (%d by signal, %d at a call)",
                  atomic_load(&by_signal), atomic_load(&at_call));
    ck_assert_int_eq(atomic_load(&by_signal), 0);
}
END_TEST

/* --- the room the preemption takes on the preempted greenlet's stack --- */

static void *measure_stack_use(void *unused)
{
    (void)unused;
    return (void *)unit_program_stack_written_while_spinning(&flag, 64 * 1024);
}

START_TEST(test_preemption_fits_in_the_stack_room_it_asks)
{
    flag = 0;
    struct coop_greenlet *spinner = unit_spawn(measure_stack_use, NULL);
    struct coop_greenlet *setter = unit_spawn(set_flag, NULL);
    size_t used = (size_t)unit_join(spinner);
    unit_join(setter);
    ck_assert_msg(used > 128 && used <= COOP_PREEMPT_STACK_ROOM / 2,
                  "the preemption used %zu bytes below the spinner's stack pointer", used);
}
END_TEST

/* --- storms --- */

enum { RING = 4, ROUNDS = 25 };
static volatile int ring_turn[RING];
static _Atomic int ring_damaged;

/* Waits for its turn spinning with live registers, then passes the turn on: each pass
 * needs the spinners in between to be preempted. */
static void *ring_member(void *arg)
{
    int i = (int)(intptr_t)arg;
    struct unit_live_registers out;
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t seed = (uint64_t)(i * 1000 + round) << 20;
        unit_program_spin_with_live_registers(&ring_turn[i], seed, &out);
        if (!unit_program_registers_intact(&out, &ring_turn[i], seed))
            atomic_fetch_add(&ring_damaged, 1);
        ring_turn[i] = 0;
        ring_turn[(i + 1) % RING] = 1;
    }
    return NULL;
}

static void run_ring(void)
{
    struct coop_greenlet *g[RING];
    atomic_store(&ring_damaged, 0);
    for (int i = 0; i < RING; i++)
        ring_turn[i] = i == 0;
    for (int i = 0; i < RING; i++)
        g[i] = unit_spawn(ring_member, (void *)(intptr_t)i);
    for (int i = 0; i < RING; i++)
        unit_join(g[i]);
}

/* The fewest preemptions the ring needs on `hubs` hubs. Spinners never block, so between
 * two preemptions the running set stays put, and the members taking turns in that stretch all
 * ran at once: at most `hubs` turns go by without a preemption. Of the RING * ROUNDS - 1 gaps
 * between turns, the first `hubs` may be filled as hubs pick up new greenlets and the last
 * RING - 1 as members exit; every `hubs` consecutive gaps of the rest hold a preemption. */
static uint64_t ring_preemptions_needed(int hubs)
{
    int gaps = RING * ROUNDS - 1 - hubs - (RING - 1);
    return hubs >= RING ? 0 : (uint64_t)(gaps / hubs);
}

START_TEST(test_storm_of_preemptions_in_a_ring)
{
    uint64_t before = coop_preemptions();
    run_ring();
    ck_assert_int_eq(atomic_load(&ring_damaged), 0);
    ck_assert_uint_ge(coop_preemptions(), before + ring_preemptions_needed(coop_sched_regular_hubs()));
}
END_TEST

/*
 * Preemption at any moment: a real thread asks for it every 20 us with the hub's current
 * switch count, as an overeager monitor would, besides the monitor itself, and sends bare
 * SIGURGs too (a program's, which the handler must leave alone), while spinners pass a
 * turn around, greenlets yield to each other and others sleep. The asks find greenlets
 * anywhere: in the middle of a switch, in a yield, in coop's code, the cases the handler
 * must refuse, or already gone by the time the signal lands.
 */
static _Atomic bool bombing;
static struct coop_hub *bombed;

static void *bomb(void *unused)
{
    (void)unused;
    coop_mark_runtime_thread();
    struct timespec gap = { 0, 20000 };
    for (unsigned n = 0; atomic_load(&bombing); n++) {
        if (n % 4 == 0)
            coop_sys(SYS_tgkill, getpid(), bombed->tid, COOP_PREEMPT_SIGNAL);
        else
            coop_preempt_ask(bombed, atomic_load(&bombed->switches));
        nanosleep(&gap, NULL);
    }
    return NULL;
}

enum { YIELDS = 20000, NAPS = 50 };

static void *yield_many(void *count)
{
    for (int i = 0; i < YIELDS; i++) {
        coop_yield();
        ++*(int *)count;
    }
    return NULL;
}

static void *nap_many(void *count)
{
    for (int i = 0; i < NAPS; i++) {
        coop_sleep_until(coop_now() + 100000);
        ++*(int *)count;
    }
    return NULL;
}

START_TEST(test_signals_at_any_moment_leave_every_greenlet_whole)
{
    bombed = coop_thread.hub;
    int yields[2] = { 0, 0 }, naps[2] = { 0, 0 };
    /* The first greenlet installs the handler (as the monitor starts): signals after it. */
    struct coop_greenlet *others[4] = {
        unit_spawn(yield_many, &yields[0]), unit_spawn(yield_many, &yields[1]),
        unit_spawn(nap_many, &naps[0]), unit_spawn(nap_many, &naps[1]),
    };
    atomic_store(&bombing, true);
    pthread_t bomber;
    ck_assert_int_eq(pthread_create(&bomber, NULL, bomb, NULL), 0);
    run_ring();
    for (int i = 0; i < 4; i++)
        unit_join(others[i]);
    atomic_store(&bombing, false);
    pthread_join(bomber, NULL);
    ck_assert_int_eq(atomic_load(&ring_damaged), 0);
    ck_assert_int_eq(yields[0], YIELDS);
    ck_assert_int_eq(yields[1], YIELDS);
    ck_assert_int_eq(naps[0], NAPS);
    ck_assert_int_eq(naps[1], NAPS);
}
END_TEST

/*
 * The flag saying that a preemption signal is on its way to a hub is cleared by the handler
 * on that hub's thread, which finds its hub in the TLS of whatever greenlet it interrupts,
 * also in the middle of a switch to one that last ran on another hub, or to a new one (made
 * from its creator's). Greenlets spawned here are stolen by the other hubs while a thread
 * asks every hub for a preemption every 20 us; once it stops, each signal asked for is
 * taken (no hub thread blocks it) and no flag may stay set: one left set would keep the
 * last loop going until Check's timeout (that hub would never be preempted again).
 */
static _Atomic bool asking;

static void *ask_every_hub(void *unused)
{
    (void)unused;
    coop_mark_runtime_thread();
    struct timespec gap = { 0, 20000 };
    while (atomic_load(&asking)) {
        for (int i = 0; i < coop_hub_total(); i++) {
            struct coop_hub *h = coop_hub_at(i);
            coop_preempt_ask(h, atomic_load(&h->switches));
        }
        nanosleep(&gap, NULL);
    }
    return NULL;
}

static void *yield_twice(void *unused)
{
    (void)unused;
    coop_yield();
    coop_yield();
    return NULL;
}

START_TEST(test_no_preemption_flag_is_left_set_by_a_switch)
{
    enum { ROUNDS_OF_SPAWNS = 300, SPAWNS = 16 };
    pthread_t asker;
    unit_join(unit_spawn(yield_twice, NULL));  /* the monitor, which installs the handler, is up */
    atomic_store(&asking, true);
    ck_assert_int_eq(pthread_create(&asker, NULL, ask_every_hub, NULL), 0);
    for (int round = 0; round < ROUNDS_OF_SPAWNS; round++) {
        struct coop_greenlet *g[SPAWNS];
        for (int i = 0; i < SPAWNS; i++)
            g[i] = unit_spawn(yield_twice, NULL);
        for (int i = 0; i < SPAWNS; i++)
            unit_join(g[i]);
    }
    atomic_store(&asking, false);
    pthread_join(asker, NULL);
    for (int i = 0; i < coop_hub_total(); i++)
        while (atomic_load(&coop_hub_at(i)->preempt.signal_on_its_way))
            coop_sleep_until(coop_now() + MS(1));
}
END_TEST

/* --- a greenlet with a signal stack of its own --- */

/* What the calling OS thread has: whether it blocks the preemption signal, and its signal
 * stack. */
struct thread_look { bool blocked; void *signal_stack; };

static struct thread_look look_at_thread(void)
{
    sigset_t now;
    stack_t ss;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    sigaltstack(NULL, &ss);
    return (struct thread_look){ sigismember(&now, COOP_PREEMPT_SIGNAL), ss.ss_sp };
}

static _Alignas(16) char own_stack[64 * 1024];
static _Atomic int step;
static struct thread_look for_own, for_other, for_own_again, after_taken_down;

/* As the shim's sigaltstack. */
static void set_signal_stack(const stack_t *ss)
{
    ck_assert_int_eq(coop_preempt_set_signal_stack(ss, NULL), 0);
}

static void *with_own_signal_stack(void *unused)
{
    (void)unused;
    set_signal_stack(&(stack_t){ .ss_sp = own_stack, .ss_size = sizeof own_stack });
    for_own = look_at_thread();
    atomic_store(&step, 1);
    while (atomic_load(&step) != 2)
        coop_yield();
    for_own_again = look_at_thread();
    set_signal_stack(&(stack_t){ .ss_flags = SS_DISABLE });
    after_taken_down = look_at_thread();
    return NULL;
}

static void *without_one(void *unused)
{
    (void)unused;
    while (atomic_load(&step) != 1)
        coop_yield();
    for_other = look_at_thread();
    atomic_store(&step, 2);
    return NULL;
}

/* Whichever OS thread runs a greenlet with a signal stack of its own has that stack and
 * blocks the preemption signal, while and only while that greenlet runs there. */
START_TEST(test_a_signal_stack_and_its_hold_are_the_greenlets_own)
{
    atomic_store(&step, 0);
    struct coop_greenlet *own = unit_spawn(with_own_signal_stack, NULL);
    struct coop_greenlet *other = unit_spawn(without_one, NULL);
    unit_join(own);
    unit_join(other);
    ck_assert(for_own.blocked && for_own.signal_stack == own_stack);
    ck_assert(!for_other.blocked && for_other.signal_stack != own_stack);
    ck_assert(for_own_again.blocked && for_own_again.signal_stack == own_stack);
    ck_assert(!after_taken_down.blocked && after_taken_down.signal_stack != own_stack);
    struct thread_look after = look_at_thread();     /* each hub's thread keeps its own */
    ck_assert(!after.blocked && after.signal_stack != own_stack);
}
END_TEST

Suite *preempt_suite(void)
{
    Suite *s = suite_create("preempt");
    TCase *tc = unit_tcase("preempt");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_spinner_gives_way_to_the_greenlet_it_waits_for);
    /* What one preempted greenlet sees, and what runs in its place: on one hub, where the
     * greenlet it waits for can run only if it is preempted (with more, another hub runs
     * it). make test runs the unit tests with one hub too. */
    if (unit_one_hub()) {
        tcase_add_test(tc, test_every_register_survives_a_preemption);
        tcase_add_test(tc, test_fpu_control_and_errno_stay_each_greenlets_own);
        tcase_add_test(tc, test_mask_and_altstack_are_the_threads_after_a_preemption);
        tcase_add_test(tc, test_preempted_greenlet_goes_behind_what_the_poll_wakes);
        tcase_add_test(tc, test_refused_preemption_is_taken_at_the_next_interposed_call);
        tcase_add_test(tc, test_no_preemption_under_a_libc_frame);
        tcase_add_test(tc, test_no_preemption_in_a_clock_read_of_coops_own);
        tcase_add_test(tc, test_preemption_fits_in_the_stack_room_it_asks);
    }
    tcase_add_test(tc, test_storm_of_preemptions_in_a_ring);
    tcase_add_test(tc, test_signals_at_any_moment_leave_every_greenlet_whole);
    tcase_add_test(tc, test_no_preemption_flag_is_left_set_by_a_switch);
    tcase_add_test(tc, test_a_signal_stack_and_its_hold_are_the_greenlets_own);
    suite_add_tcase(s, tc);
    return s;
}
