/*
 * sched_clock: each thread's scheduling attributes, CPU affinity and CPU clock are its own,
 * one line per check:
 *
 *   ok NAME: what was seen       as with glibc's threads
 *   FAIL NAME: why               not
 *
 * and exits 1 when any check failed. Scheduling: a policy and priority given through
 * attributes (explicit scheduling) or pthread_setschedparam / pthread_setschedprio are the
 * ones the thread, its creator and pthread_getattr_np see, and only that thread's; inherited
 * otherwise; bad ones say EINVAL, and without CAP_SYS_NICE and RLIMIT_RTPRIO a real-time one
 * says EPERM (checked in a child process that gives them up). The results depend on the
 * privileges the program runs with (root or not), the same natively and under coop. CPU
 * affinity: a set a thread gives itself is what it, its creator, pthread_getattr_np and the
 * threads it creates see, not its creator's nor another thread's; attributes give one; a set
 * of CPUs the process may not use says EINVAL; a child that pins itself, or a pinned thread's
 * child, runs a program pinned; threads setting and reading each other's at once read whole
 * sets. CPU clocks: a thread just created has used less CPU time than its creator, which
 * computed first; a thread's clock advances while it computes and not while it waits for
 * another one that computes; pthread_getcpuclockid's clock works with clock_gettime and
 * clock_getres, and not once the thread is gone; pthread_getcpuclockid on a thread that has
 * ended, not yet joined, says ESRCH (natively once the kernel has cleared its tid: asked until
 * then, with a hang guard); in a forked child, a clock of the parent's threads says EINVAL.
 * The amounts of CPU time are made by construction (loops that run until the thread's own
 * clock has advanced), never assumed.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { CHILD_BURN_MS = 30, MAIN_BURN_MS = 100 };

static const char *policy_name(int policy)
{
    switch (policy) {
    case SCHED_OTHER: return "OTHER";
    case SCHED_FIFO: return "FIFO";
    case SCHED_RR: return "RR";
    case SCHED_BATCH: return "BATCH";
    case SCHED_IDLE: return "IDLE";
    default: return "?";
    }
}

/* "POLICY PRIORITY" of a thread, or the error. */
static void describe(pthread_t t, char *out, size_t len)
{
    struct sched_param param;
    int policy, err = pthread_getschedparam(t, &policy, &param);

    if (err != 0)
        snprintf(out, len, "%s", errname(err));
    else
        snprintf(out, len, "%s %d", policy_name(policy), param.sched_priority);
}

static void describe_attr(pthread_t t, char *out, size_t len)
{
    pthread_attr_t attr;
    struct sched_param param;
    int policy;

    if (pthread_getattr_np(t, &attr) != 0) {
        snprintf(out, len, "no attributes");
        return;
    }
    pthread_attr_getschedpolicy(&attr, &policy);
    pthread_attr_getschedparam(&attr, &param);
    pthread_attr_destroy(&attr);
    snprintf(out, len, "%s %d", policy_name(policy), param.sched_priority);
}

/* A thread that says what it sees of itself, then waits until told to end. */
struct sitter {
    sem_t ready, go;
    char self_view[32];
};

static void *sit(void *arg)
{
    struct sitter *s = arg;

    describe(pthread_self(), s->self_view, sizeof s->self_view);
    sem_post(&s->ready);
    sem_wait(&s->go);
    return NULL;
}

static int start_sitter(struct sitter *s, const pthread_attr_t *attr, pthread_t *t)
{
    sem_init(&s->ready, 0, 0);
    sem_init(&s->go, 0, 0);
    int err = pthread_create(t, attr, sit, s);
    if (err == 0)
        sem_wait(&s->ready);
    return err;
}

static void stop_sitter(struct sitter *s, pthread_t t)
{
    sem_post(&s->go);
    pthread_join(t, NULL);
}

/* ---- scheduling ---- */

static void check_explicit(void)
{
    pthread_attr_t attr;
    struct sched_param param = { .sched_priority = 10 };
    struct sitter s;
    pthread_t t;
    char creator_view[32], attr_view[32], result[160];
    int err;

    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &param);
    err = start_sitter(&s, &attr, &t);
    if (err != 0) {
        snprintf(result, sizeof result, "pthread_create: %s", errname(err));
        report_result("sched_explicit", true, result);
        return;
    }
    describe(t, creator_view, sizeof creator_view);
    describe_attr(t, attr_view, sizeof attr_view);
    stop_sitter(&s, t);
    snprintf(result, sizeof result, "the thread sees %s, its creator %s, pthread_getattr_np %s", s.self_view,
             creator_view, attr_view);
    report_result("sched_explicit", (strcmp(s.self_view, "FIFO 10") == 0 && strcmp(creator_view, "FIFO 10") == 0
                                     && strcmp(attr_view, "FIFO 10") == 0)
                                        || failf("%s; expected FIFO 10 everywhere", result),
                  result);
}

static void check_change(void)
{
    struct sitter s;
    pthread_t t;
    char before[32], after[32], mine[32], result[256];
    struct sched_param rr5 = { 5 }, zero = { 0 }, five = { 5 }, too_high = { 100 };

    start_sitter(&s, NULL, &t);
    describe(t, before, sizeof before);
    int set = pthread_setschedparam(t, SCHED_RR, &rr5);
    int prio = pthread_setschedprio(t, 7);
    describe(t, after, sizeof after);
    describe(pthread_self(), mine, sizeof mine);
    int bad_policy = pthread_setschedparam(t, 12345, &zero);
    int bad_other = pthread_setschedparam(t, SCHED_OTHER, &five);
    int bad_fifo = pthread_setschedparam(t, SCHED_FIFO, &too_high);
    int bad_prio = pthread_setschedprio(t, 0);
    int batch = pthread_setschedparam(t, SCHED_BATCH, &zero);
    int other = pthread_setschedparam(t, SCHED_OTHER, &zero);
    stop_sitter(&s, t);
    snprintf(result, sizeof result,
             "%s, RR 5 %s, prio 7 %s: %s, creator still %s; EINVAL for policy %s, OTHER 5 %s, FIFO 100 %s, "
             "prio 0 %s; BATCH %s, OTHER %s",
             before, errname(set), errname(prio), after, mine, errname(bad_policy), errname(bad_other),
             errname(bad_fifo), errname(bad_prio), errname(batch), errname(other));
    bool ok = bad_policy == EINVAL && bad_other == EINVAL && bad_fifo == EINVAL && batch == 0 && other == 0
              && (set != 0 || (prio == 0 && strcmp(after, "RR 7") == 0 && bad_prio == EINVAL))
              && strcmp(mine, before) == 0;
    report_result("sched_change", ok || failf("%s", result), result);
}

static void check_inherit(void)
{
    struct sched_param rr3 = { 3 }, zero = { 0 };
    struct sitter s;
    pthread_t t;
    char result[96];

    int set = pthread_setschedparam(pthread_self(), SCHED_RR, &rr3);
    start_sitter(&s, NULL, &t);
    stop_sitter(&s, t);
    pthread_setschedparam(pthread_self(), SCHED_OTHER, &zero);
    snprintf(result, sizeof result, "creator RR 3 %s, the new thread sees %s", errname(set), s.self_view);
    report_result("sched_inherit", strcmp(s.self_view, set == 0 ? "RR 3" : "OTHER 0") == 0 || failf("%s", result),
                  result);
}

/* In a child that gives up CAP_SYS_NICE and RLIMIT_RTPRIO: real-time scheduling is refused. */
static int unprivileged_child(void)
{
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct caps[2];
    struct rlimit none = { 0, 0 };
    pthread_attr_t attr;
    struct sched_param one = { 1 }, zero = { 0 };
    struct sitter s;
    pthread_t t;

    if (syscall(SYS_capget, &header, caps) != 0)
        return 10;
    caps[0].effective &= ~(1u << 23);      /* CAP_SYS_NICE */
    if (syscall(SYS_capset, &header, caps) != 0 || setrlimit(RLIMIT_RTPRIO, &none) != 0)
        return 11;
    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &one);
    if (pthread_create(&t, &attr, sit, &s) != EPERM)
        return 12;
    if (start_sitter(&s, NULL, &t) != 0)
        return 13;
    int fifo = pthread_setschedparam(t, SCHED_FIFO, &one);
    int batch = pthread_setschedparam(t, SCHED_BATCH, &zero);
    stop_sitter(&s, t);
    return fifo == EPERM && batch == 0 ? 0 : 14;
}

static void check_unprivileged(void)
{
    pid_t pid;
    int status;

    fflush(stdout);
    pid = fork();
    if (pid == 0)
        _exit(unprivileged_child());
    waitpid(pid, &status, 0);
    report_result("sched_unprivileged",
                  (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                      || failf("the child ended with status 0x%x (10+: which step failed)", status),
                  "without CAP_SYS_NICE: create and setschedparam EPERM for FIFO, BATCH allowed");
}

/* ---- CPU affinity ---- */

static cpu_set_t process_cpus;     /* main's at start: every CPU the process may use */
static int first_cpu, outside_cpu = -1;     /* one of them, and one it may not use */
static const char *pinned_name = "first";    /* name_set's for first_cpu alone */

/* How a thread's set compares with the process's: "all", "first" (first_cpu alone), "N
 * others", or the error. */
static void name_set(int err, const cpu_set_t *set, char *out, size_t len)
{
    if (err != 0)
        snprintf(out, len, "%s", errname(err));
    else if (CPU_EQUAL(set, &process_cpus))
        snprintf(out, len, "all");
    else if (CPU_COUNT(set) == 1 && CPU_ISSET(first_cpu, set))
        snprintf(out, len, "first");
    else
        snprintf(out, len, "%d others", CPU_COUNT(set));
}

static void own_cpus(char *out, size_t len)
{
    cpu_set_t set;
    int err = sched_getaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
    name_set(err, &set, out, len);
}

static void thread_cpus(pthread_t t, char *out, size_t len)
{
    cpu_set_t set;
    name_set(pthread_getaffinity_np(t, sizeof set, &set), &set, out, len);
}

static void attr_cpus(pthread_t t, char *out, size_t len)
{
    pthread_attr_t attr;
    cpu_set_t set;
    int err = pthread_getattr_np(t, &attr);
    if (err == 0) {
        err = pthread_attr_getaffinity_np(&attr, sizeof set, &set);
        pthread_attr_destroy(&attr);
    }
    name_set(err, &set, out, len);
}

static cpu_set_t only(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return set;
}

static void *report_own_cpus(void *view)
{
    own_cpus(view, 32);
    return NULL;
}

/* A thread that pins itself to the first CPU, says what it and a thread it creates see,
 * waits while its creator looks, then takes every CPU back with sched_setaffinity. */
struct pinned { sem_t ready, go; int pin; char self_view[32], child_view[32], after_view[32]; };

static void *pin_self(void *arg)
{
    struct pinned *p = arg;
    cpu_set_t first = only(first_cpu);
    pthread_t child;

    p->pin = pthread_setaffinity_np(pthread_self(), sizeof first, &first);
    own_cpus(p->self_view, sizeof p->self_view);
    pthread_create(&child, NULL, report_own_cpus, p->child_view);
    pthread_join(child, NULL);
    sem_post(&p->ready);
    sem_wait(&p->go);
    sched_setaffinity(0, sizeof process_cpus, &process_cpus);
    own_cpus(p->after_view, sizeof p->after_view);
    return NULL;
}

/* The set is the thread's own: its creator, and a thread that shares its OS thread under
 * coop, keep theirs. */
static void check_affinity_own(void)
{
    struct pinned p;
    pthread_t t, other;
    char creator_view[32], attr_view[32], mine[32], other_view[32], result[512];

    sem_init(&p.ready, 0, 0);
    sem_init(&p.go, 0, 0);
    pthread_create(&t, NULL, pin_self, &p);
    sem_wait(&p.ready);
    thread_cpus(t, creator_view, sizeof creator_view);
    attr_cpus(t, attr_view, sizeof attr_view);
    own_cpus(mine, sizeof mine);
    pthread_create(&other, NULL, report_own_cpus, other_view);
    pthread_join(other, NULL);
    sem_post(&p.go);
    pthread_join(t, NULL);
    snprintf(result, sizeof result,
             "pinned itself (%s): it sees %s, a thread it creates %s, its creator %s, pthread_getattr_np %s; "
             "the creator keeps %s, another thread %s; after sched_setaffinity it sees %s",
             errname(p.pin), p.self_view, p.child_view, creator_view, attr_view, mine, other_view, p.after_view);
    bool ok = p.pin == 0 && strcmp(p.self_view, pinned_name) == 0 && strcmp(p.child_view, pinned_name) == 0
              && strcmp(creator_view, pinned_name) == 0 && strcmp(attr_view, pinned_name) == 0
              && strcmp(mine, "all") == 0 && strcmp(other_view, "all") == 0 && strcmp(p.after_view, "all") == 0;
    report_result("affinity_own", ok || failf("%s", result), result);
}

/* A set in the attributes is the new thread's; one of CPUs the process may not use is
 * refused with EINVAL, however it is given. */
static void check_affinity_given(void)
{
    pthread_attr_t attr;
    pthread_t t;
    char view[32] = "", mine[32], result[512];
    cpu_set_t first = only(first_cpu), outside = only(outside_cpu < 0 ? first_cpu : outside_cpu), small;

    pthread_attr_init(&attr);
    pthread_attr_setaffinity_np(&attr, sizeof first, &first);
    int created = pthread_create(&t, &attr, report_own_cpus, view);
    if (created == 0)
        pthread_join(t, NULL);
    pthread_attr_setaffinity_np(&attr, sizeof outside, &outside);
    char ignored[32];
    int refused = pthread_create(&t, &attr, report_own_cpus, ignored);
    if (refused == 0)
        pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
    int set = pthread_setaffinity_np(pthread_self(), sizeof outside, &outside);
    int sched_set = sched_setaffinity(0, sizeof outside, &outside) == 0 ? 0 : errno;
    int short_get = sched_getaffinity(0, 4, &small) == 0 ? 0 : errno;
    own_cpus(mine, sizeof mine);
    snprintf(result, sizeof result,
             "created with the first CPU (%s): it sees %s; with one outside the process's: create %s, "
             "pthread_setaffinity_np %s, sched_setaffinity %s; a 4-byte set %s; the caller keeps %s",
             errname(created), view, errname(refused), errname(set), errname(sched_set), errname(short_get), mine);
    bool ok = created == 0 && strcmp(view, pinned_name) == 0 && short_get == EINVAL && strcmp(mine, "all") == 0
              && (outside_cpu < 0 || (refused == EINVAL && set == EINVAL && sched_set == EINVAL));
    report_result("affinity_given", ok || failf("%s", result), result);
}

/* A forked child that pins itself and then runs a program (taskset does so, and Python's
 * preexec_fn), or the child of a thread that pinned itself: the program runs pinned. It is
 * this one again, which answers by its status. */
static int pinned_to(const char *cpu)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1 && CPU_ISSET(atoi(cpu), &set) ? 0 : 1;
}

/* Whether the program a forked child runs is pinned, the child pinning itself (pin_child)
 * or not. */
static bool runs_pinned(bool pin_child)
{
    char cpu[16];
    snprintf(cpu, sizeof cpu, "%d", first_cpu);
    pid_t child = fork();
    if (child == 0) {
        cpu_set_t first = only(first_cpu);
        if (pin_child)
            sched_setaffinity(0, sizeof first, &first);
        execl("/proc/self/exe", "sched_clock", "pinned-to", cpu, (char *)NULL);
        _exit(2);
    }
    int status = -1;
    waitpid(child, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void *fork_pinned(void *result)
{
    cpu_set_t first = only(first_cpu);
    pthread_setaffinity_np(pthread_self(), sizeof first, &first);
    *(bool *)result = runs_pinned(false);
    return NULL;
}

static void check_affinity_exec(void)
{
    char result[160];
    bool child_pinned = runs_pinned(true), thread_pinned = false;
    pthread_t t;
    pthread_create(&t, NULL, fork_pinned, &thread_pinned);
    pthread_join(t, NULL);
    snprintf(result, sizeof result, "the program a child runs is pinned: after the child pinned itself %s, "
             "a pinned thread's child %s", child_pinned ? "yes" : "no", thread_pinned ? "yes" : "no");
    report_result("affinity_exec", (child_pinned && thread_pinned) || failf("%s", result), result);
}

/* Threads that set and read each other's sets at once, on every hub under coop: each read is
 * one of the two sets written, whole. */
enum { STORM_THREADS = 8, STORM_ROUNDS = 500 };
static pthread_t storm[STORM_THREADS];
static pthread_barrier_t storm_start, storm_end;
static _Atomic int storm_bad, storm_errors;

static void *storm_member(void *arg)
{
    long i = (long)arg;
    cpu_set_t first = only(first_cpu), seen;
    pthread_barrier_wait(&storm_start);
    for (int round = 0; round < STORM_ROUNDS; round++) {
        const cpu_set_t *set = round % 2 ? &first : &process_cpus;
        if (pthread_setaffinity_np(storm[(i + 1) % STORM_THREADS], sizeof *set, set) != 0
            || pthread_getaffinity_np(storm[(i + 2) % STORM_THREADS], sizeof seen, &seen) != 0)
            storm_errors++;
        else if (!CPU_EQUAL(&seen, &first) && !CPU_EQUAL(&seen, &process_cpus))
            storm_bad++;
    }
    pthread_barrier_wait(&storm_end);      /* none ends while another may name it */
    return NULL;
}

static void check_affinity_storm(void)
{
    char result[160];
    pthread_barrier_init(&storm_start, NULL, STORM_THREADS + 1);
    pthread_barrier_init(&storm_end, NULL, STORM_THREADS);
    for (long i = 0; i < STORM_THREADS; i++)
        pthread_create(&storm[i], NULL, storm_member, (void *)i);
    pthread_barrier_wait(&storm_start);     /* every handle is stored */
    for (int i = 0; i < STORM_THREADS; i++)
        pthread_join(storm[i], NULL);
    snprintf(result, sizeof result, "%d threads set and read each other's sets %d times: %d errors, %d torn reads",
             STORM_THREADS, STORM_ROUNDS, (int)storm_errors, (int)storm_bad);
    report_result("affinity_storm", (storm_errors == 0 && storm_bad == 0) || failf("%s", result), result);
}

/* ---- CPU clocks ---- */

static int64_t cpu_ns(clockid_t clock)
{
    struct timespec ts;

    if (clock_gettime(clock, &ts) != 0)
        return -1;
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Computes until the calling thread's own CPU clock has advanced by ms. */
static void burn_ms(long ms)
{
    int64_t until = cpu_ns(CLOCK_THREAD_CPUTIME_ID) + ms * 1000000LL;
    volatile uint64_t x = 0;

    while (cpu_ns(CLOCK_THREAD_CPUTIME_ID) < until)
        for (int i = 0; i < 10000; i++)
            x += (uint64_t)i;
}

struct computer {
    sem_t computed, go;
    int64_t start, after_burn, after_wait;
};

static void *compute_then_wait(void *arg)
{
    struct computer *c = arg;

    c->start = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    burn_ms(CHILD_BURN_MS);
    c->after_burn = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    sem_post(&c->computed);
    sem_wait(&c->go);
    c->after_wait = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    return NULL;
}

static void check_new_thread_clock(void)
{
    struct sitter s;
    pthread_t t;
    clockid_t clock;
    int64_t theirs, burned = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    bool ok;

    burn_ms(MAIN_BURN_MS);
    burned = cpu_ns(CLOCK_THREAD_CPUTIME_ID) - burned;
    start_sitter(&s, NULL, &t);
    ok = pthread_getcpuclockid(t, &clock) == 0 || failf("pthread_getcpuclockid failed");
    theirs = ok ? cpu_ns(clock) : -1;
    stop_sitter(&s, t);
    ok = ok && (theirs >= 0 || failf("clock_gettime on its clock failed"))
         && (theirs < burned
             || failf("the new thread used %.3f ms, more than its creator computed before it (%.3f)",
                      theirs / 1e6, burned / 1e6));
    report_result("cpu_clock_new_thread", ok, "less CPU time than its creator computed before creating it");
}

static void check_own_clock(void)
{
    struct computer c;
    pthread_t t;
    clockid_t clock;
    struct timespec res = { 0, 0 };
    int64_t seen_by_main, main_before, main_burned;
    bool ok;

    sem_init(&c.computed, 0, 0);
    sem_init(&c.go, 0, 0);
    pthread_create(&t, NULL, compute_then_wait, &c);
    pthread_getcpuclockid(t, &clock);
    sem_wait(&c.computed);
    main_before = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    burn_ms(MAIN_BURN_MS);
    main_burned = cpu_ns(CLOCK_THREAD_CPUTIME_ID) - main_before;
    seen_by_main = cpu_ns(clock);
    int res_err = clock_getres(clock, &res);
    sem_post(&c.go);
    pthread_join(t, NULL);
    /* The kernel releases a joined thread's clock a little after join returns: wait for it
     * (a minute at most, a hang guard). */
    int gone = 0;
    for (int tries = 0; tries < 60000 && (gone = cpu_ns(clock) < 0 ? errno : 0) == 0; tries++)
        usleep(1000);

    ok = (c.after_burn - c.start >= CHILD_BURN_MS * 1000000LL || failf("its clock did not advance while it computed"))
         && (c.after_wait - c.after_burn < main_burned
             || failf("its clock advanced %.3f ms while it waited and another thread computed %.3f ms",
                      (c.after_wait - c.after_burn) / 1e6, main_burned / 1e6))
         && (seen_by_main >= c.after_burn - c.start
             || failf("pthread_getcpuclockid's clock said %.3f ms, the thread itself %.3f",
                      seen_by_main / 1e6, (c.after_burn - c.start) / 1e6))
         && ((res_err == 0 && res.tv_sec == 0 && res.tv_nsec == 1)
             || failf("clock_getres: %s, %ld ns", errname(res_err), res.tv_nsec))
         && (gone == EINVAL || failf("its clock once it was gone: %s", errname(gone)));
    report_result("cpu_clock_own", ok,
                  "advances while the thread computes, not while another does; clock_getres 1 ns; EINVAL once gone");
}

static void *return_at_once(void *arg) { return arg; }

static void check_ended_thread_clock(void)
{
    pthread_t t;
    clockid_t clock;
    int err = 0;

    pthread_create(&t, NULL, return_at_once, NULL);
    for (int tries = 0; tries < 10000 && (err = pthread_getcpuclockid(t, &clock)) == 0; tries++)
        usleep(1000);
    pthread_join(t, NULL);
    report_result("cpu_clock_ended_thread", err == ESRCH || failf("pthread_getcpuclockid: %s", errname(err)),
                  "ESRCH for a thread that has ended, before its join");
}

static void check_clock_in_child(void)
{
    struct sitter s;
    pthread_t t;
    clockid_t clock;
    int status = -1;

    start_sitter(&s, NULL, &t);
    bool ok = pthread_getcpuclockid(t, &clock) == 0 || failf("pthread_getcpuclockid failed");
    pid_t pid = ok ? fork() : -1;
    if (pid == 0)
        _exit(cpu_ns(clock) < 0 && errno == EINVAL ? 0 : 1);
    if (pid > 0)
        waitpid(pid, &status, 0);
    stop_sitter(&s, t);
    ok = ok && ((WIFEXITED(status) && WEXITSTATUS(status) == 0)
                || failf("the child read its parent's thread's clock (status 0x%x)", status));
    report_result("cpu_clock_in_child", ok, "a parent's thread's clock is EINVAL in a forked child");
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "pinned-to") == 0)
        return pinned_to(argv[2]);
    if (sched_getaffinity(0, sizeof process_cpus, &process_cpus) != 0)
        die_errno("sched_getaffinity");
    for (first_cpu = 0; !CPU_ISSET(first_cpu, &process_cpus); first_cpu++)
        ;
    if (CPU_COUNT(&process_cpus) == 1)
        pinned_name = "all";    /* one CPU: pinned to it is pinned to all */
    for (int cpu = CPU_SETSIZE - 1; cpu >= 0 && outside_cpu < 0; cpu--)
        if (!CPU_ISSET(cpu, &process_cpus))
            outside_cpu = cpu;
    check_explicit();
    check_change();
    check_inherit();
    check_unprivileged();
    check_affinity_own();
    check_affinity_given();
    check_affinity_exec();
    check_affinity_storm();
    check_new_thread_clock();
    check_own_clock();
    check_ended_thread_clock();
    check_clock_in_child();
    printf("%s\n", failures == 0 ? "sched_clock: all checks passed" : "sched_clock: checks failed");
    return failures == 0 ? 0 : 1;
}
