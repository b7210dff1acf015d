/*
 * Family thread, what the kernel keeps per OS thread and coop keeps per greenlet: the
 * scheduling policy and priority, the CPU affinity and the CPU clock.
 *
 * Scheduling: a greenlet's policy and priority are what its attributes,
 * pthread_setschedparam, pthread_setschedprio, sched_setscheduler or sched_setparam made
 * them, inherited from its creator otherwise, and reported back; the hub runs every
 * greenlet alike, whatever they say. A change gives the errors the kernel would give the
 * thread: EINVAL for a policy or priority out of range, EPERM where the caller may not raise
 * it (the kernel's rule: real-time policies need CAP_SYS_NICE or room under RLIMIT_RTPRIO,
 * leaving SCHED_IDLE needs RLIMIT_NICE, clearing SCHED_RESET_ON_FORK needs CAP_SYS_NICE).
 *
 * CPU affinity, the same way: what pthread_setaffinity_np, sched_setaffinity or the
 * attributes gave a greenlet (the set as the kernel would take it: cut to the CPUs the
 * process may use, EINVAL if none is left), its creator's otherwise, and reported back; a
 * greenlet that never had one reports the set the process had at start, on which every hub
 * runs. Applied to the OS thread, as it was, a program that pins its workers pinned whole
 * hubs, all of them to one CPU when the workers it pinned last sat on every hub, and its
 * other threads then read that one CPU as what the process had (JVMs, Rust and Go size their
 * pools by it). The one exception is a process with one OS thread (see set_named). A program
 * the greenlet execs, and a child it starts, run by its set and its policy (shim_sched_lend).
 *
 * CPU clocks: Linux names a thread's CPU clock ~tid << 3 | 6 (per thread, scheduler time);
 * coop names a greenlet's the same way with its number (core/cpu.c) above any tid
 * (PID_MAX_LIMIT is 2^22), a clock the kernel refuses if it ever sees one. clock_gettime
 * and clock_getres answer for those, and for CLOCK_THREAD_CPUTIME_ID in a greenlet.
 */
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"
#include "../core/sys.h"

#define EXPORT __attribute__((visibility("default")))

#define CAP_NICE 23                    /* CAP_SYS_NICE */
#define CLOCK_NUMBER_BASE (1 << 22)    /* above every tid */
#define CPUCLOCK_THREAD_SCHED 6        /* CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED */

/* --- scheduling --- */

static bool real_time(int policy) { return policy == SCHED_FIFO || policy == SCHED_RR; }

static bool capable_of_nice(void)
{
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    return REAL(syscall)(SYS_capget, &header, data) == 0 && (data[0].effective & (1u << CAP_NICE));
}

static rlim_t soft_limit(int resource)
{
    struct rlimit limit;
    return getrlimit(resource, &limit) == 0 ? limit.rlim_cur : 0;
}

/* The kernel's answer to setting policy and priority on a thread that has `now` (either
 * policy may carry SCHED_RESET_ON_FORK, which only the privileged may clear). */
static int check_change(const struct coop_sched *now, int policy, int priority)
{
    int base = policy & ~SCHED_RESET_ON_FORK, was = now->policy & ~SCHED_RESET_ON_FORK;
    if (base != SCHED_OTHER && base != SCHED_BATCH && base != SCHED_IDLE && !real_time(base))
        return EINVAL;
    if (priority < sched_get_priority_min(base) || priority > sched_get_priority_max(base))
        return EINVAL;
    bool privileged_only = (now->policy & SCHED_RESET_ON_FORK) && !(policy & SCHED_RESET_ON_FORK);
    if (real_time(base)) {
        rlim_t room = soft_limit(RLIMIT_RTPRIO);
        int current = real_time(was) ? now->priority : 0;
        privileged_only |= (base != was && room == 0) || (priority > current && (rlim_t)priority > room);
    }
    if (was == SCHED_IDLE && base != SCHED_IDLE)
        privileged_only |= soft_limit(RLIMIT_NICE) < 20;    /* back to nice 0: 20 - 0 */
    return privileged_only && !capable_of_nice() ? EPERM : 0;
}

/* g's policy and priority; a thread's original context starts with its OS thread's. */
static struct coop_sched *sched_of(struct coop_greenlet *g)
{
    struct coop_sched *s = coop_greenlet_sched(g);
    if (!s->known) {
        struct sched_param param = { 0 };
        s->policy = SCHED_OTHER;
        REAL(pthread_getschedparam)((pthread_t)coop_greenlet_os_thread(g), &s->policy, &param);
        s->priority = param.sched_priority;
        s->known = true;
    }
    return s;
}

static int policy_for_new(const pthread_attr_t *attr, struct coop_sched *out)
{
    struct coop_greenlet *creator = coop_self();
    int inherit = PTHREAD_INHERIT_SCHED;
    if (attr != NULL)
        pthread_attr_getinheritsched(attr, &inherit);
    if (inherit == PTHREAD_INHERIT_SCHED || attr == NULL) {
        if (creator != NULL) {
            *out = *sched_of(creator);
            out->cpus = NULL;       /* the creator's: cpus_for_new makes the new one's */
        } else {
            struct sched_param param = { 0 };
            REAL(pthread_getschedparam)(REAL(pthread_self)(), &out->policy, &param);
            out->priority = param.sched_priority;
            out->known = true;
        }
        return 0;
    }
    struct sched_param param;
    pthread_attr_getschedpolicy(attr, &out->policy);
    pthread_attr_getschedparam(attr, &param);
    out->priority = param.sched_priority;
    out->known = true;
    struct coop_sched from = { SCHED_OTHER, 0, true, NULL };
    return check_change(creator != NULL ? sched_of(creator) : &from, out->policy, out->priority);
}

EXPORT int pthread_getschedparam(pthread_t t, int *policy, struct sched_param *param)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_getschedparam)(t, policy, param);
    struct coop_sched *s = sched_of(g);
    *policy = s->policy;
    *param = (struct sched_param){ .sched_priority = s->priority };
    return 0;
}

static int change(struct coop_greenlet *g, int policy, int priority)
{
    struct coop_sched *s = sched_of(g);
    int err = check_change(s, policy, priority);
    if (err == 0) {
        s->policy = policy;
        s->priority = priority;
    }
    return err;
}

/* What a child of a thread that has s starts with: SCHED_RESET_ON_FORK puts a real-time
 * policy back to SCHED_OTHER, and is not inherited itself. */
static struct coop_sched after_fork(struct coop_sched s)
{
    if ((s.policy & SCHED_RESET_ON_FORK) && real_time(s.policy & ~SCHED_RESET_ON_FORK))
        s.policy = SCHED_OTHER, s.priority = 0;
    s.policy &= ~SCHED_RESET_ON_FORK;
    return s;
}

/* A change the caller makes to itself by its thread id while it is the process's only thread
 * reaches its OS thread too, as the kernel's call did before coop interposed it: the program
 * runs by it, and so do the children it forks. */
static int change_named(struct coop_greenlet *g, int policy, int priority)
{
    int err = check_change(sched_of(g), policy, priority);
    if (err == 0 && g == coop_self() && !coop_sched_started()
        && REAL(sched_setscheduler)(0, policy, &(struct sched_param){ .sched_priority = priority }) != 0)
        err = errno;
    return err != 0 ? err : change(g, policy, priority);
}

EXPORT int pthread_setschedparam(pthread_t t, int policy, const struct sched_param *param)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_setschedparam)(t, policy, param);
    return change(g, policy, param->sched_priority);
}

EXPORT int pthread_setschedprio(pthread_t t, int priority)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_setschedprio)(t, priority);
    return change(g, sched_of(g)->policy, priority);
}

/* The greenlet a thread id names: 0 and what gettid() tells the caller now name the caller,
 * the process's id its main thread, another hub's id the caller too (its gettid() of before
 * it moved, most likely; never the hub's thread, under every greenlet of a hub); NULL for
 * the kernel's (another process, a thread coop does not run), and before coop starts. */
static struct coop_greenlet *greenlet_of_pid(pid_t pid)
{
    struct coop_greenlet *self = shim_patched[FAM_thread] && !shim_vfork_child ? coop_self() : NULL;
    if (self == NULL)
        return NULL;
    if (pid == 0 || pid == (pid_t)REAL(syscall)(SYS_gettid))
        return self;
    if (pid == getpid())
        return coop_process_leader();
    return coop_is_hub_thread_id(pid) ? self : NULL;
}

/* The calls that name a thread by its id, for a greenlet: its own policy and priority. */
EXPORT int sched_getscheduler(pid_t pid)
{
    struct coop_greenlet *g = greenlet_of_pid(pid);
    return g != NULL ? sched_of(g)->policy : REAL(sched_getscheduler)(pid);
}

EXPORT int sched_getparam(pid_t pid, struct sched_param *param)
{
    struct coop_greenlet *g = greenlet_of_pid(pid);
    if (g == NULL)
        return REAL(sched_getparam)(pid, param);
    if (param == NULL)
        return shim_syscall_result(EINVAL);
    *param = (struct sched_param){ .sched_priority = sched_of(g)->priority };
    return 0;
}

EXPORT int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param)
{
    struct coop_greenlet *g = greenlet_of_pid(pid);
    if (g == NULL)
        return REAL(sched_setscheduler)(pid, policy, param);
    return shim_syscall_result(param != NULL ? change_named(g, policy, param->sched_priority) : EINVAL);
}

EXPORT int sched_setparam(pid_t pid, const struct sched_param *param)
{
    struct coop_greenlet *g = greenlet_of_pid(pid);
    if (g == NULL)
        return REAL(sched_setparam)(pid, param);
    return shim_syscall_result(param != NULL ? change_named(g, sched_of(g)->policy, param->sched_priority) : EINVAL);
}

/* --- CPU affinity --- */

/* Where a set is kept (a void * slot, NULL while none was set, CPUS_GONE once its greenlet
 * ended): a greenlet's coop_sched.cpus, or early_cpus. Any greenlet on any hub may set
 * another's (pthread_setaffinity_np names any thread), and a greenlet's end frees its own:
 * every read and write of a slot, and the set it points to, under cpus_lock, which no one
 * holds across a switch. */
static coop_lock_t cpus_lock;
#define CPUS_GONE ((void *)1)

/* Whether the calling greenlet may hold cpus_lock: a handler of the program's that runs on
 * it then (one the kernel delivers runs at once, even in coop's code) and execs, which is
 * async-signal-safe, must not wait for it (shim_sched_of_caller). Set before the lock is
 * taken, cleared after it is let go. */
static __thread bool cpus_lock_mine;

static void lock_cpus(void)
{
    cpus_lock_mine = true;
    coop_lock(&cpus_lock);
}

static void unlock_cpus(void)
{
    coop_unlock(&cpus_lock);
    cpus_lock_mine = false;
}

/* Before coop starts, a library's constructor may pin the initial thread (libgomp does with
 * OMP_PROC_BIND): the set is kept here for the main thread's greenlet, and the OS thread,
 * which becomes a hub and whose set decides how many hubs there are, is left as the process
 * started it. */
static void *early_cpus;

static void **cpus_slot(struct coop_greenlet *g) { return &coop_greenlet_sched(g)->cpus; }

/* early_cpus if the caller is the initial thread before coop starts, names itself, and the
 * thread family will be coop's; else NULL. */
static void **early_slot(bool names_initial_thread)
{
    bool early = !atomic_load(&shim_settings_read) && names_initial_thread
                 && REAL(syscall)(SYS_gettid) == getpid() && shim_thread_objects_ours_before_start();
    return early ? &early_cpus : NULL;
}

/* *out = the set at slot; false where none was set. */
static bool own_cpus(void **slot, cpu_set_t *out)
{
    lock_cpus();
    const cpu_set_t *own = *slot != CPUS_GONE ? *slot : NULL;
    if (own != NULL)
        *out = *own;
    unlock_cpus();
    return own != NULL;
}

/* *out = the set at slot, or where none was set the one every hub runs on; false before
 * coop starts, where neither is known. */
static bool cpus_at(void **slot, cpu_set_t *out)
{
    return own_cpus(slot, out) || coop_process_cpus(out);
}

/* The set the kernel gives a thread that asks for size bytes of *asked (cut to the CPUs its
 * cpuset allows that are up), or its error (EINVAL when none is left, EFAULT): the kernel's
 * own answer for the calling OS thread, whose set is put back at once unless keep. */
static int cpus_taken(size_t size, const cpu_set_t *asked, cpu_set_t *out, bool keep)
{
    cpu_set_t before;
    if (REAL(sched_getaffinity)(0, sizeof before, &before) != 0 || REAL(sched_setaffinity)(0, size, asked) != 0)
        return errno;
    int err = REAL(sched_getaffinity)(0, sizeof *out, out) == 0 ? 0 : errno;
    if (!keep)
        REAL(sched_setaffinity)(0, sizeof before, &before);
    return err;
}

/* Stores set at slot, allocating it the first time: 0, ENOMEM, or ESRCH for a greenlet that
 * has ended. */
static int store_cpus(void **slot, const cpu_set_t *set)
{
    cpu_set_t *fresh = NULL;
    for (;;) {
        lock_cpus();
        void *now = *slot;
        if (now == NULL && fresh != NULL) {
            now = *slot = fresh;
            fresh = NULL;
        }
        if (now != NULL && now != CPUS_GONE)
            *(cpu_set_t *)now = *set;
        unlock_cpus();
        if (now != NULL) {
            __libc_free(fresh);     /* another setter stored one first */
            return now != CPUS_GONE ? 0 : ESRCH;
        }
        if ((fresh = __libc_malloc(sizeof *fresh)) == NULL)
            return ENOMEM;
    }
}

/* keep: the set is the caller's own, for its OS thread too. */
static int set_cpus(void **slot, size_t size, const cpu_set_t *asked, bool keep)
{
    cpu_set_t set;
    int err = cpus_taken(size, asked, &set, keep);
    return err != 0 ? err : store_cpus(slot, &set);
}

/* A set the caller gives itself or another thread. Before the hubs start, the caller is the
 * process's only OS thread (it names itself), and the kernel's set is kept as well: a
 * program that runs alone runs where it asked; coop_sched_start widens the thread again.
 * Not a set made before coop starts: that thread's set decides how many hubs there are. */
static int set_named(void **slot, size_t size, const cpu_set_t *asked)
{
    return set_cpus(slot, size, asked, slot != &early_cpus && !coop_sched_started());
}

/* Reads the set at slot into size bytes at *set as the kernel's call would: the kernel
 * checks size and fills in the calling OS thread's (and zeroes the rest), over which the
 * slot's set goes. */
static int get_cpus(void **slot, size_t size, cpu_set_t *set)
{
    if (REAL(sched_getaffinity)(0, size, set) != 0)
        return errno;
    cpu_set_t own;
    if (cpus_at(slot, &own))
        memcpy(set, &own, size < sizeof own ? size : sizeof own);
    return 0;
}

/* A new greenlet's set: its attributes' (glibc reports every bit set when they have none),
 * else its creator's. */
static int cpus_for_new(const pthread_attr_t *attr, void **out)
{
    *out = NULL;
    cpu_set_t asked, set;
    if (attr != NULL && pthread_attr_getaffinity_np(attr, sizeof asked, &asked) == 0 && CPU_COUNT(&asked) < CPU_SETSIZE)
        return set_cpus(out, sizeof asked, &asked, false);
    struct coop_greenlet *creator = coop_self();
    return creator != NULL && own_cpus(cpus_slot(creator), &set) ? store_cpus(out, &set) : 0;
}

int shim_sched_for_new(const pthread_attr_t *attr, struct coop_sched *out)
{
    int err = policy_for_new(attr, out);
    return err != 0 ? err : cpus_for_new(attr, &out->cpus);
}

void shim_sched_report(struct coop_greenlet *g, pthread_attr_t *attr)
{
    struct coop_sched *s = sched_of(g);
    struct sched_param param = { .sched_priority = s->priority };
    pthread_attr_setschedpolicy(attr, s->policy);
    pthread_attr_setschedparam(attr, &param);
    cpu_set_t cpus;
    if (cpus_at(cpus_slot(g), &cpus))
        pthread_attr_setaffinity_np(attr, sizeof cpus, &cpus);
}

void shim_sched_drop(struct coop_sched *s)
{
    __libc_free(s->cpus);
    s->cpus = NULL;
}

/* --- what a thread passes on to the programs and children it starts --- */

/* An exec, and a child the caller starts, take the scheduling state the kernel keeps for the
 * calling OS thread, which coop keeps per greenlet. shim_sched_of_caller reads the caller's:
 * the CPU set it gave itself, and its policy and priority if it ever set or read them (else
 * they are what every hub's thread has), as a child of its would start with them (fork's
 * rules) where it is for a child, a forked one or a vfork child. In a vfork child it reads
 * the parent's records without changing them (and overrides, at exec, a set or policy the
 * vfork child gave itself).
 * shim_sched_lend lends them to the calling OS thread for the call, which takes its own back
 * after, by its thread id (shim_sched_take_back: a handler that ran during the call may have
 * waited, and the greenlet gone on elsewhere). A policy that the thread may not leave again
 * without privilege (SCHED_IDLE under RLIMIT_NICE, SCHED_RESET_ON_FORK) is lent for an exec,
 * and stays should the exec fail (coop says so), and to a forked child's thread, but not to
 * a thread that starts a child (posix_spawn's pool thread). system() and popen()'s children
 * set theirs themselves (shim/proc.c). A handler that interrupted its greenlet holding
 * cpus_lock reads no CPU set. */
void shim_sched_of_caller(struct shim_sched_loan *loan, enum shim_lend_for purpose)
{
    struct coop_greenlet *self = shim_patched[FAM_thread] ? coop_self() : NULL;
    const struct coop_sched *s = self != NULL ? coop_greenlet_sched(self) : NULL;
    loan->purpose = purpose;
    loan->lent_cpus = loan->lent_policy = false;
    loan->has_cpus = self != NULL && !cpus_lock_mine && own_cpus(cpus_slot(self), &loan->cpus);
    loan->has_policy = s != NULL && s->known;
    if (loan->has_policy) {
        /* A vfork child is a child: the kernel applied fork's rules to it already. */
        bool child = purpose != LEND_FOR_EXEC || shim_vfork_child;
        struct coop_sched inherited = child ? after_fork(*s) : *s;
        loan->policy = inherited.policy;
        loan->param = (struct sched_param){ .sched_priority = inherited.priority };
    }
}

void shim_sched_lend(struct shim_sched_loan *loan)
{
    loan->thread = (pid_t)REAL(syscall)(SYS_gettid);
    if (loan->has_cpus && REAL(sched_getaffinity)(0, sizeof loan->thread_cpus, &loan->thread_cpus) == 0)
        loan->lent_cpus = REAL(sched_setaffinity)(0, sizeof loan->cpus, &loan->cpus) == 0;
    if (!loan->has_policy || (loan->thread_policy = REAL(sched_getscheduler)(0)) < 0
        || REAL(sched_getparam)(0, &loan->thread_param) != 0
        || (loan->policy == loan->thread_policy && loan->param.sched_priority == loan->thread_param.sched_priority))
        return;
    struct coop_sched lent = { loan->policy, loan->param.sched_priority, true, NULL };
    if (loan->purpose != LEND_FOR_CHILD || check_change(&lent, loan->thread_policy, loan->thread_param.sched_priority) == 0)
        loan->lent_policy = REAL(sched_setscheduler)(0, loan->policy, &loan->param) == 0;
}

void shim_sched_take_back(struct shim_sched_loan *loan)
{
    if (loan->lent_policy && REAL(sched_setscheduler)(loan->thread, loan->thread_policy, &loan->thread_param) != 0)
        coop_warn("thread %d keeps the scheduling policy %d it took on for an exec or a child (%s)",
                  (int)loan->thread, loan->policy, strerror(errno));
    if (loan->lent_cpus)
        REAL(sched_setaffinity)(loan->thread, sizeof loan->thread_cpus, &loan->thread_cpus);
    loan->lent_cpus = loan->lent_policy = false;
}

/* A fork's child has only the forking greenlet (another may have held the lock), on an OS
 * thread that takes that greenlet's set and policy, as a forked thread's child has them. */
static void sched_fork_child(void)
{
    cpus_lock = (coop_lock_t){ 0 };
    struct shim_sched_loan own;
    shim_sched_of_caller(&own, LEND_FOR_FORKED);
    shim_sched_lend(&own);      /* for good: this thread is the child */
    if (own.has_policy) {
        struct coop_sched *s = coop_greenlet_sched(coop_self());
        s->policy = own.policy;
        s->priority = own.param.sched_priority;
    }
}

void shim_sched_init(void)
{
    struct coop_greenlet *self = coop_self();
    if (self != NULL) {
        *cpus_slot(self) = early_cpus;      /* no other thread runs yet */
        early_cpus = NULL;
    }
    pthread_atfork(NULL, NULL, sched_fork_child);
}

void shim_sched_exit(struct coop_greenlet *g)
{
    lock_cpus();
    void *cpus = *cpus_slot(g);
    *cpus_slot(g) = CPUS_GONE;
    unlock_cpus();
    if (cpus != CPUS_GONE)
        __libc_free(cpus);
}

/* The slot of the thread t names, or NULL for one that is the kernel's. */
static void **slot_of_thread(pthread_t t)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    return g != NULL ? cpus_slot(g) : early_slot(t == REAL(pthread_self)());
}

/* A vfork child is one thread, whose memory (greenlets' records included) is its parent's:
 * the caller's handle names it, at the kernel, and other greenlets are none of its. */
static int vfork_child_call(pthread_t t, size_t size, cpu_set_t *get, const cpu_set_t *set)
{
    if (shim_greenlet_of(t) != coop_self())
        return ESRCH;
    int r = get != NULL ? REAL(sched_getaffinity)(0, size, get) : REAL(sched_setaffinity)(0, size, set);
    return r == 0 ? 0 : errno;
}

EXPORT int pthread_getaffinity_np(pthread_t t, size_t size, cpu_set_t *set)
{
    if (shim_vfork_child)
        return vfork_child_call(t, size, set, NULL);
    void **slot = slot_of_thread(t);
    if (slot == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_getaffinity_np)(t, size, set);
    return get_cpus(slot, size, set);
}

EXPORT int pthread_setaffinity_np(pthread_t t, size_t size, const cpu_set_t *set)
{
    if (shim_vfork_child)
        return vfork_child_call(t, size, NULL, set);
    void **slot = slot_of_thread(t);
    if (slot == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_setaffinity_np)(t, size, set);
    return set_named(slot, size, set);
}

/* Its set's slot; before coop starts, the initial thread's early one. */
static void **slot_of_pid(pid_t pid)
{
    struct coop_greenlet *g = greenlet_of_pid(pid);
    return g != NULL ? cpus_slot(g) : early_slot(pid == 0 || pid == getpid());
}

EXPORT int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set)
{
    void **slot = slot_of_pid(pid);
    return slot != NULL ? shim_syscall_result(get_cpus(slot, size, set)) : REAL(sched_getaffinity)(pid, size, set);
}

EXPORT int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *set)
{
    void **slot = slot_of_pid(pid);
    return slot != NULL ? shim_syscall_result(set_named(slot, size, set)) : REAL(sched_setaffinity)(pid, size, set);
}

/* --- CPU clocks --- */

static clockid_t clock_of(int number)
{
    return (clockid_t)(~(unsigned)(CLOCK_NUMBER_BASE + number) << 3 | CPUCLOCK_THREAD_SCHED);
}

/* The greenlet whose CPU time a clock measures, or NULL for the kernel's clocks. */
static struct coop_greenlet *greenlet_of_clock(clockid_t clock)
{
    if (clock == CLOCK_THREAD_CPUTIME_ID)
        return shim_patched[FAM_thread] ? coop_self() : NULL;
    if (clock >= 0 || (clock & 7) != CPUCLOCK_THREAD_SCHED)
        return NULL;
    unsigned id = ~(unsigned)(clock >> 3);     /* the kernel's CPUCLOCK_PID */
    return id >= CLOCK_NUMBER_BASE ? coop_greenlet_numbered((int)(id - CLOCK_NUMBER_BASE)) : NULL;
}

EXPORT int pthread_getcpuclockid(pthread_t t, clockid_t *clock)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? ESRCH : REAL(pthread_getcpuclockid)(t, clock);
    int number = coop_greenlet_number(g);
    if (number <= 0)
        return number < 0 ? ESRCH : ENOMEM;     /* ended: glibc's answer for a thread gone */
    coop_greenlet_cpu_ns(g);      /* charging starts now */
    *clock = clock_of(number);
    return 0;
}

EXPORT int clock_gettime(clockid_t clock, struct timespec *ts)
{
    struct coop_greenlet *g = clock >= 0 && clock != CLOCK_THREAD_CPUTIME_ID ? NULL : greenlet_of_clock(clock);
    if (g == NULL)
        return REAL(clock_gettime)(clock, ts);
    int64_t ns = coop_greenlet_cpu_ns(g);
    *ts = (struct timespec){ ns / 1000000000, ns % 1000000000 };
    return 0;
}

EXPORT int clock_getres(clockid_t clock, struct timespec *res)
{
    if (clock == CLOCK_THREAD_CPUTIME_ID || greenlet_of_clock(clock) == NULL)
        return REAL(clock_getres)(clock, res);
    if (res != NULL)
        *res = (struct timespec){ 0, 1 };     /* as the kernel's CPU clocks */
    return 0;
}
