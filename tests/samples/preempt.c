/*
 * preempt MODE: threads that wait for one another without ever making a blocking call, the
 * patterns a cooperative scheduler cannot run without preemption. Natively each finishes at
 * once; under coop each can only finish if the looping thread was preempted, since the
 * thread it waits for runs on the same OS thread (tests/integration/test_preempt.sh).
 *   spin      a thread spins on an atomic flag that a second thread sets
 *   wake      two spinners, and a setter that first sleeps 1 ms five times: under coop with a
 *             slice longer than the test (COOP_PREEMPT_MS=600000) only the sleeps' passed
 *             deadlines can preempt a spinner, and the sleeper must run next, before the
 *             other spinner, which nothing would preempt
 *   share     two threads count for a second while main sleeps: neither counts less than
 *             a third of the other (under coop on one hub: their slices are alike; a
 *             preemption's own requeue must not end the next one's slice early)
 *   trylock   a thread loops on pthread_mutex_trylock until main, which holds the mutex
 *             and waits until the loop has begun, unlocks it
 *   unlock    main holds a mutex over 8 rounds of memset (in libc, where coop cannot preempt
 *             it: a preemption asked for waits for an interposed call), and marks the few
 *             instructions from just before each unlock to just after it; a second thread
 *             counts, between yields, how often it ran while the rounds went on, and how
 *             often inside that mark. stderr gives the counts: under coop on one hub, never
 *             inside (a preemption is never taken at an unlock, where Guile's collector
 *             found a stale VM stack pointer)
 *   equal     a thread loops on pthread_equal until another names it
 *   compute   a thread computes for SECONDS (default 5) while 100 threads sleep 10 ms in a
 *             loop; every sleeper must wake while the computation runs. Each sleeper's worst
 *             lateness goes to stderr: information, not a result.
 *   urg       the spin, with a SIGURG handler of the program's own (coop preempts with
 *             SIGURG): the handler stays installed and gets the SIGURG the program raises
 *   setuid    setuid(getuid()) while another thread exists: glibc signals every thread it
 *             knows, coop's monitor included, and waits until each has answered
 *   exec [N]  a thread computes for 12 ms (just past a 10 ms slice), then execs this program,
 *             N times over (default 100): a preemption signal left pending across an exec
 *             must not kill the new program
 *   altstack  as the BEAM: a thread sets up an alternate signal stack, takes SIGALRM (every
 *             2 ms, an interval timer; the other threads block it) with SA_ONSTACK, sleeps
 *             1 ms, then spins on a stack of its own, as the BEAM's JIT runs Erlang code,
 *             until a second thread, which sleeps 20 ms first, sets a flag, or until SIGURG
 *             is pending in the kernel for it and 3 SIGALRMs came since (or 2,000 turns of
 *             the spin, should they go to another thread; coop keeps its preemption signal
 *             out of such a thread: on one hub the spin ends so, and stderr says which);
 *             nothing may have been written below the spin's stack pointer, where the
 *             kernel would have pushed a signal's frame
 *   ucontext  the spin, on a stack the spinning thread made with makecontext, as coroutine
 *             libraries do: the return address makecontext gives it leads to no unwind
 *             information
 *   unwindless  main spins in code without unwind information (raw reads of a pipe) until
 *             a byte comes, which a thread writes after 10 ms; stderr goes to that pipe
 *             meanwhile. coop cannot preempt such code: on one hub the writer never runs,
 *             and only coop's warning that main keeps its hub ends the spin (so a library
 *             that would hang silently hangs the test); what came besides the thread's
 *             byte goes on to stderr
 *   unwindless-fd  the same, but the writer waits in a read of a pipe that main fills just
 *             before its spin: under coop, an fd event that only main's hub would take
 *   unwindless-end  the same as unwindless, but the spin's frame pointer is 0, which an
 *             unwinder takes for the end of the stack: the frames beyond are still unknown
 * stdout gets one line per mode, the same natively and under coop.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <ucontext.h>

enum { SLEEPERS = 100, SLEEP_MS = 10 };

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int err = pthread_create(t, NULL, fn, arg);
    if (err != 0)
        die("pthread_create: %s", strerror(err));
}

static void join(pthread_t t)
{
    int err = pthread_join(t, NULL);
    if (err != 0)
        die("pthread_join: %s", strerror(err));
}

/* --- spin --- */

static atomic_int flag;

static void *spin_until_flag(void *unused)
{
    (void)unused;
    unsigned long spins = 0;
    while (!atomic_load_explicit(&flag, memory_order_acquire))
        spins++;
    return (void *)spins;
}

static void *set_flag(void *unused)
{
    (void)unused;
    atomic_store_explicit(&flag, 1, memory_order_release);
    return NULL;
}

/* Spinners against a setter; one that sleeps first starts first, so that it sleeps before
 * they spin. */
static void spin_against(void *(*spinner_fn)(void *), void *(*setter_fn)(void *), bool setter_first, int spinners,
                         const char *line)
{
    pthread_t spinner[2], setter;
    if (setter_first)
        start(&setter, setter_fn, NULL);
    for (int i = 0; i < spinners; i++)
        start(&spinner[i], spinner_fn, NULL);
    if (!setter_first)
        start(&setter, setter_fn, NULL);
    for (int i = 0; i < spinners; i++)
        join(spinner[i]);
    join(setter);
    puts(line);
}

static void spin(void)
{
    spin_against(spin_until_flag, set_flag, false, 1, "spin: the spinning thread saw the flag another thread set");
}

/* --- ucontext --- */

static ucontext_t spinner_thread, coroutine;

static void spin_in_coroutine(void)
{
    spin_until_flag(NULL);
    setcontext(&spinner_thread);
}

/* The spin on a stack of the program's own, as coroutine libraries run them (QEMU's): the
 * return address makecontext gives it leads to no unwind information. */
static void *spin_on_coroutine_stack(void *unused)
{
    (void)unused;
    static char stack[64 * 1024];
    if (getcontext(&coroutine) != 0)
        die_errno("getcontext");
    coroutine.uc_stack.ss_sp = stack;
    coroutine.uc_stack.ss_size = sizeof stack;
    makecontext(&coroutine, spin_in_coroutine, 0);
    if (swapcontext(&spinner_thread, &coroutine) != 0)
        die_errno("swapcontext");
    return NULL;
}

static void spin_on_ucontext(void)
{
    spin_against(spin_on_coroutine_stack, set_flag, false, 1,
                 "ucontext: a thread spinning on a stack of makecontext's saw the flag another thread set");
}

static void *set_flag_after_sleeps(void *unused)
{
    (void)unused;
    for (int i = 0; i < 5; i++)
        sleep_ms(1);
    return set_flag(NULL);
}

static void *count_until_flag(void *count)
{
    while (!atomic_load_explicit(&flag, memory_order_acquire))
        atomic_fetch_add_explicit((_Atomic unsigned long *)count, 1, memory_order_relaxed);
    return NULL;
}

static void share(void)
{
    static _Atomic unsigned long counts[2];
    pthread_t counter[2];
    for (int i = 0; i < 2; i++)
        start(&counter[i], count_until_flag, &counts[i]);
    sleep_ms(1000);
    atomic_store_explicit(&flag, 1, memory_order_release);
    for (int i = 0; i < 2; i++)
        join(counter[i]);
    unsigned long a = counts[0], b = counts[1];
    fprintf(stderr, "share: counts %lu and %lu\n", a, b);
    printf("share: %s\n", a >= b / 3 && b >= a / 3 ? "two computing threads got alike shares"
                                                     : "one computing thread got less than a third of the other's");
}

/* --- trylock --- */

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static atomic_int trying;

static void *trylock_until_free(void *unused)
{
    (void)unused;
    atomic_store(&trying, 1);
    unsigned long tries = 0;
    int err;
    while ((err = pthread_mutex_trylock(&held)) == EBUSY)
        tries++;
    if (err != 0)
        die("pthread_mutex_trylock: %s", strerror(err));
    pthread_mutex_unlock(&held);
    return (void *)tries;
}

static void trylock(void)
{
    pthread_t t;
    pthread_mutex_lock(&held);
    start(&t, trylock_until_free, NULL);
    while (!atomic_load(&trying))
        sched_yield();
    pthread_mutex_unlock(&held);
    join(t);
    printf("trylock: the looping thread took the mutex once its holder let it go\n");
}

/* --- unlock --- */

enum { UNLOCK_ROUNDS = 8, MEMSETS_PER_ROUND = 500 };
static pthread_mutex_t guarded = PTHREAD_MUTEX_INITIALIZER, after = PTHREAD_MUTEX_INITIALIZER;
static atomic_int at_unlock, unlock_rounds_done;
static atomic_long watcher_turns, turns_at_unlock;
static char scratch[256 * 1024];

static void *watch_unlocks(void *unused)
{
    (void)unused;
    for (;;) {
        if (atomic_load(&unlock_rounds_done))
            break;
        atomic_fetch_add(&watcher_turns, 1);
        if (atomic_load(&at_unlock))
            atomic_fetch_add(&turns_at_unlock, 1);
        sched_yield();
    }
    return NULL;
}

static void unlock_window(void)
{
    pthread_t watcher;
    start(&watcher, watch_unlocks, NULL);
    for (int round = 0; round < UNLOCK_ROUNDS; round++) {
        pthread_mutex_lock(&guarded);
        for (int i = 0; i < MEMSETS_PER_ROUND; i++) {
            memset(scratch, round + i, sizeof scratch);
            __asm__ volatile("" ::: "memory");
        }
        atomic_store(&at_unlock, 1);
        pthread_mutex_unlock(&guarded);
        atomic_store(&at_unlock, 0);
        if (pthread_mutex_trylock(&after) == 0)     /* an interposed call after the mark: a */
            pthread_mutex_unlock(&after);           /* preemption asked for may wait for it */
    }
    atomic_store(&unlock_rounds_done, 1);
    join(watcher);
    fprintf(stderr, "unlock: the other thread ran %ld times during the rounds, %ld of them at an unlock\n", atomic_load(&watcher_turns),
            atomic_load(&turns_at_unlock));
    printf("unlock: a thread held a mutex over %d rounds of work in libc\n", UNLOCK_ROUNDS);
}

/* --- equal --- */

static pthread_t _Atomic named;

static void *wait_to_be_named(void *unused)
{
    (void)unused;
    while (!pthread_equal(atomic_load(&named), pthread_self()))
        ;
    return NULL;
}

static void *name_it(void *waiter)
{
    atomic_store(&named, *(pthread_t *)waiter);
    return NULL;
}

static void equal(void)
{
    pthread_t waiter, namer;
    start(&waiter, wait_to_be_named, NULL);
    start(&namer, name_it, &waiter);
    join(waiter);
    join(namer);
    printf("equal: the looping thread saw pthread_equal name it\n");
}

/* --- urg --- */

static volatile sig_atomic_t urgent;

static void on_urgent(int sig)
{
    (void)sig;
    urgent = 1;
}

static void urg(void)
{
    struct sigaction sa = { .sa_handler = on_urgent, .sa_flags = SA_RESTART }, seen;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, &sa, NULL) != 0)
        die_errno("sigaction");
    atomic_store(&flag, 0);
    spin();
    if (sigaction(SIGURG, NULL, &seen) != 0 || seen.sa_handler != on_urgent)
        die("the SIGURG handler was replaced");
    urgent = 0;
    raise(SIGURG);
    printf("urg: %s\n", urgent ? "the program's SIGURG handler stayed and ran" : "the SIGURG handler did not run");
}

/* --- setuid --- */

static void *wait_for_flag(void *unused)
{
    (void)unused;
    while (!atomic_load(&flag))
        sleep_ms(1);
    return NULL;
}

static void set_own_uid(void)
{
    pthread_t t;
    atomic_store(&flag, 0);
    start(&t, wait_for_flag, NULL);
    sleep_ms(20);
    int r = setuid(getuid());
    atomic_store(&flag, 1);
    join(t);
    printf("setuid: %s\n", r == 0 ? "returned 0 while another thread existed" : strerror(errno));
}

/* --- exec --- */

static void *compute_then_exec(void *generations_left)
{
    uint64_t end = now_ns() + 12 * 1000000u;
    volatile double x = 1.0;
    while (now_ns() < end)
        x = x * 1.0000001 + 1e-9;
    char left[24];
    snprintf(left, sizeof left, "%ld", (long)(intptr_t)generations_left - 1);
    execl("/proc/self/exe", "preempt", "exec", left, (char *)NULL);
    die_errno("execl");
}

static void exec_after_computing(long generations)
{
    if (generations == 0) {
        printf("exec: every generation started after the last computed and exec'd\n");
        return;
    }
    pthread_t t;
    start(&t, compute_then_exec, (void *)(intptr_t)generations);
    join(t);              /* not reached: the exec replaces the process */
}

/* --- altstack --- */

enum { JIT_STACK = 64 * 1024, JIT_FRAME_ROOM = 1024, PATTERN = 0x5a };
static _Alignas(16) unsigned char jit_stack[JIT_STACK];
static const char *spin_ended_by;

/* Whether SIGURG is pending in the kernel for this OS thread (a system call of its own,
 * with no stack of its own: the caller is on the JIT's). */
static bool urgent_pending(void)
{
    uint64_t pending = 0;
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_rt_sigpending), "D"(&pending), "S"(8L)
                     : "rcx", "r11", "memory");
    return r == 0 && (pending & 1ULL << (SIGURG - 1));
}

/* What lies below the spin's frames is as the pattern left it. */
static bool below_untouched(void)
{
    for (size_t i = 0; i < JIT_STACK - JIT_FRAME_ROOM; i++)
        if (jit_stack[i] != PATTERN)
            return false;
    return true;
}

static atomic_int alarms;

static void on_alarm(int sig)
{
    (void)sig;
    atomic_fetch_add(&alarms, 1);
}

/* Once SIGURG is pending, the spin goes on for 3 SIGALRMs, or SPIN_ON_TURNS turns where
 * they go to another thread (under coop, a spare hub's may take them first). */
enum { SPIN_ON_TURNS = 2000 };

static void spin_on_jit_stack(void)
{
    int alarms_when_pending = -1, turns_since = 0;
    for (;;) {
        if (atomic_load(&flag)) {
            spin_ended_by = "the flag";
            return;
        }
        if (alarms_when_pending < 0 && urgent_pending())
            alarms_when_pending = atomic_load(&alarms);
        if (alarms_when_pending >= 0
            && (atomic_load(&alarms) - alarms_when_pending >= 3 || ++turns_since == SPIN_ON_TURNS)) {
            spin_ended_by = "a SIGURG held pending for this thread";
            return;
        }
        if (!below_untouched()) {
            spin_ended_by = "something written below the stack pointer";
            return;
        }
    }
}

/* Calls fn with the stack pointer at top, as a JIT switches to the stack of the code it
 * runs; fn is a C function, so every register it may change is listed. */
static void call_on_stack(void (*fn)(void), void *top)
{
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "mov %[top], %%rsp\n\t"
                     "call *%[fn]\n\t"
                     "mov %%rbx, %%rsp"
                     : : [top] "r"(top), [fn] "r"(fn)
                     : "rbx", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc",
                       "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                       "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

static void *spin_with_signal_stack(void *unused)
{
    (void)unused;
    stack_t ss = { .ss_sp = malloc(SIGSTKSZ * 4), .ss_size = SIGSTKSZ * 4 };
    if (ss.ss_sp == NULL || sigaltstack(&ss, NULL) != 0)
        die_errno("sigaltstack");
    struct sigaction alarm_action = { .sa_handler = on_alarm, .sa_flags = SA_ONSTACK | SA_RESTART };
    struct itimerval every_2ms = { { 0, 2000 }, { 0, 2000 } }, stopped = { 0 };
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    if (sigaction(SIGALRM, &alarm_action, NULL) != 0 || pthread_sigmask(SIG_UNBLOCK, &alarm, NULL) != 0
        || setitimer(ITIMER_REAL, &every_2ms, NULL) != 0)
        die_errno("SIGALRM");
    sleep_ms(1);        /* under coop: resumed through a switch, wherever */
    memset(jit_stack, PATTERN, sizeof jit_stack);
    call_on_stack(spin_on_jit_stack, jit_stack + JIT_STACK - 64);
    if (setitimer(ITIMER_REAL, &stopped, NULL) != 0)
        die_errno("setitimer");
    fprintf(stderr, "altstack: the spin ended by %s\n", spin_ended_by);
    fprintf(stderr, "altstack: %d SIGALRMs taken\n", atomic_load(&alarms));
    if (!below_untouched())
        die("altstack: something was written below the spin's stack pointer (a signal's frame?)");
    /* Taken down before it is freed (ASan's thread exit would unmap a stack left set up). */
    stack_t off = { .ss_flags = SS_DISABLE };
    if (sigaltstack(&off, NULL) != 0)
        die_errno("sigaltstack");
    free(ss.ss_sp);
    return NULL;
}

static void *set_flag_after_sleep(void *unused)
{
    (void)unused;
    sleep_ms(20);
    atomic_store(&flag, 1);
    return NULL;
}

static void altstack(void)
{
    pthread_t spinner, setter;
    atomic_store(&flag, 0);
    sigset_t alarm;     /* for the spinner alone: under coop, main's handlers run only when it does */
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, NULL);
    start(&spinner, spin_with_signal_stack, NULL);
    start(&setter, set_flag_after_sleep, NULL);
    join(spinner);
    join(setter);
    printf("altstack: a thread with a signal stack of its own spun on a stack of its own, "
           "and nothing was written below its stack pointer\n");
}

/* --- unwindless --- */

/* Reads fd (non-blocking) by raw system calls until a byte comes, and returns it. No unwind
 * information covers it, so an unwinder guesses its caller from the frame pointer register,
 * which code built without frame pointers uses for data, whatever the flags this file is
 * built with: with a nonzero return_address, it points at a frame on the stack that returns
 * there (no code, where such guesses often land: the unwind fails); with 0, it is 0, which
 * an unwinder takes for the end of the stack, though the frames beyond are main's. */
int spin_until_byte(int fd, uintptr_t return_address);
__asm__(".pushsection .text\n"
        ".globl spin_until_byte\n"
        ".type spin_until_byte, @function\n"
        "spin_until_byte:\n"
        "    push %rbp\n"
        "    sub $24, %rsp\n"                  /* the byte, then a frame: rbp, return address */
        "    movq $0, 8(%rsp)\n"
        "    mov %rsi, 16(%rsp)\n"
        "    lea 8(%rsp), %rbp\n"
        "    test %rsi, %rsi\n"
        "    cmovz %rsi, %rbp\n"
        "1:  xor %eax, %eax\n"                /* SYS_read */
        "    mov %rsp, %rsi\n"
        "    mov $1, %edx\n"
        "    syscall\n"
        "    cmp $1, %rax\n"
        "    je 2f\n"
        "    pause\n"
        "    jmp 1b\n"
        "2:  movzbl (%rsp), %eax\n"
        "    add $24, %rsp\n"
        "    pop %rbp\n"
        "    ret\n"
        ".size spin_until_byte, . - spin_until_byte\n"
        ".popsection\n");

/* The writer's wait before its byte: a sleep, or a read of `go` (blocking), which main
 * fills once the writer waits in it. */
struct writer { int fd, go; };

static void *write_byte_after_wait(void *arg)
{
    struct writer *w = arg;
    char byte;
    if (w->go < 0)
        sleep_ms(10);
    else if (read(w->go, &byte, 1) != 1)
        die_errno("read");
    if (write(w->fd, "", 1) != 1)
        die_errno("write");
    return NULL;
}

/* Not canonical: no code can be there. */
#define NO_CODE 0x4153495300737200

static void unwindless(bool writer_reads, uintptr_t return_address)
{
    int ends[2], go[2] = { -1, -1 };
    fflush(stderr);
    int saved_stderr = dup(2);
    if (pipe2(ends, O_NONBLOCK) != 0 || saved_stderr < 0 || dup2(ends[1], 2) != 2
        || (writer_reads && pipe(go) != 0))
        die_errno("pipe2 or dup2");
    pthread_t writer;
    struct writer w = { ends[1], go[0] };
    start(&writer, write_byte_after_wait, &w);
    if (writer_reads) {
        sleep_ms(10);       /* under coop on one hub: the writer waits in its read by then */
        if (write(go[1], "", 1) != 1)
            die_errno("write");
    }
    char got[4096];
    got[0] = (char)spin_until_byte(ends[0], return_address);
    join(writer);
    if (dup2(saved_stderr, 2) != 2)
        die_errno("dup2");
    ssize_t n = read(ends[0], got + 1, sizeof got - 1);
    for (ssize_t i = 0; i < 1 + (n > 0 ? n : 0); i++)
        if (got[i] != '\0')
            fputc(got[i], stderr);
    puts("unwindless: a thread spun in code without unwind information until a byte came");
}

/* --- compute --- */

static atomic_int computing = 1;

struct sleeper { int id; unsigned woke_while_computing; uint64_t worst_late_ns; };

static void *compute_for(void *seconds)
{
    uint64_t end = now_ns() + (uint64_t)(intptr_t)seconds * 1000000000u;
    volatile double x = 1.0;
    while (now_ns() < end)
        for (int i = 0; i < 10000; i++)
            x = x * 1.0000001 + 1e-9;
    atomic_store(&computing, 0);
    return NULL;
}

static void *sleep_in_a_loop(void *arg)
{
    struct sleeper *s = arg;
    while (atomic_load(&computing)) {
        uint64_t due = now_ns() + SLEEP_MS * 1000000u;
        sleep_ms(SLEEP_MS);
        uint64_t late = now_ns() - due;
        if (late > s->worst_late_ns)
            s->worst_late_ns = late;
        if (atomic_load(&computing))
            s->woke_while_computing++;
    }
    return NULL;
}

static void compute(long seconds)
{
    static struct sleeper sleepers[SLEEPERS];
    pthread_t computer, t[SLEEPERS];
    for (int i = 0; i < SLEEPERS; i++) {
        sleepers[i].id = i;
        start(&t[i], sleep_in_a_loop, &sleepers[i]);
    }
    start(&computer, compute_for, (void *)(intptr_t)seconds);
    join(computer);
    int all_woke = 1;
    uint64_t worst = 0;
    for (int i = 0; i < SLEEPERS; i++) {
        join(t[i]);
        all_woke &= sleepers[i].woke_while_computing > 0;
        if (sleepers[i].worst_late_ns > worst)
            worst = sleepers[i].worst_late_ns;
        fprintf(stderr, "lateness: sleeper %d woke %u times while the computation ran, worst %.3f ms late\n", i,
                sleepers[i].woke_while_computing, sleepers[i].worst_late_ns / 1e6);
    }
    fprintf(stderr, "lateness: worst of all %.3f ms\n", worst / 1e6);
    printf("compute: %s\n", all_woke ? "every sleeper woke while one thread computed"
                                     : "some sleeper never woke while one thread computed");
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "spin") == 0)
        spin();
    else if (strcmp(mode, "wake") == 0)
        spin_against(spin_until_flag, set_flag_after_sleeps, true, 2, "wake: two spinning threads saw the flag another thread set after its sleeps");
    else if (strcmp(mode, "share") == 0)
        share();
    else if (strcmp(mode, "trylock") == 0)
        trylock();
    else if (strcmp(mode, "unlock") == 0)
        unlock_window();
    else if (strcmp(mode, "equal") == 0)
        equal();
    else if (strcmp(mode, "compute") == 0)
        compute(argc > 2 ? parse_long(argv[2], 1, 3600, "SECONDS") : 5);
    else if (strcmp(mode, "urg") == 0)
        urg();
    else if (strcmp(mode, "setuid") == 0)
        set_own_uid();
    else if (strcmp(mode, "exec") == 0)
        exec_after_computing(argc > 2 ? parse_long(argv[2], 0, 100000, "N") : 100);
    else if (strcmp(mode, "altstack") == 0)
        altstack();
    else if (strcmp(mode, "ucontext") == 0)
        spin_on_ucontext();
    else if (strcmp(mode, "unwindless") == 0)
        unwindless(false, NO_CODE);
    else if (strcmp(mode, "unwindless-fd") == 0)
        unwindless(true, NO_CODE);
    else if (strcmp(mode, "unwindless-end") == 0)
        unwindless(false, 0);
    else
        die("usage: preempt spin|wake|share|trylock|equal|compute [SECONDS]|urg|setuid|exec [N]|altstack|ucontext|unwindless|unwindless-fd|unwindless-end");
    return 0;
}
