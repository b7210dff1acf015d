/*
 * Family thread, what the kernel keeps per OS thread and coop keeps per greenlet: the
 * scheduling policy and priority, and the CPU clock.
 *
 * Scheduling: a greenlet's policy and priority are what its attributes or
 * pthread_setschedparam made them, inherited from its creator otherwise, and reported back;
 * the hub runs every greenlet alike, whatever they say. A change gives the errors the kernel
 * would give the thread: EINVAL for a policy or priority out of range, EPERM where the
 * caller may not raise it (the kernel's rule: real-time policies need CAP_SYS_NICE or room
 * under RLIMIT_RTPRIO, leaving SCHED_IDLE needs RLIMIT_NICE).
 *
 * CPU clocks: Linux names a thread's CPU clock ~tid << 3 | 6 (per thread, scheduler time);
 * coop names a greenlet's the same way with its number (core/cpu.c) above any tid
 * (PID_MAX_LIMIT is 2^22), a clock the kernel refuses if it ever sees one. clock_gettime
 * and clock_getres answer for those, and for CLOCK_THREAD_CPUTIME_ID in a greenlet.
 */
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

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

/* The kernel's answer to setting policy and priority on a thread that has `now`. */
static int check_change(const struct coop_sched *now, int policy, int priority)
{
    int base = policy & ~SCHED_RESET_ON_FORK;
    if (base != SCHED_OTHER && base != SCHED_BATCH && base != SCHED_IDLE && !real_time(base))
        return EINVAL;
    if (priority < sched_get_priority_min(base) || priority > sched_get_priority_max(base))
        return EINVAL;
    bool privileged_only = false;
    if (real_time(base)) {
        rlim_t room = soft_limit(RLIMIT_RTPRIO);
        int current = real_time(now->policy) ? now->priority : 0;
        privileged_only = (base != now->policy && room == 0)
                          || (priority > current && (rlim_t)priority > room);
    } else if (now->policy == SCHED_IDLE && base != SCHED_IDLE) {
        privileged_only = soft_limit(RLIMIT_NICE) < 20;    /* back to nice 0: 20 - 0 */
    }
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

int shim_sched_for_new(const pthread_attr_t *attr, struct coop_sched *out)
{
    struct coop_greenlet *creator = coop_self();
    int inherit = PTHREAD_INHERIT_SCHED;
    if (attr != NULL)
        pthread_attr_getinheritsched(attr, &inherit);
    if (inherit == PTHREAD_INHERIT_SCHED || attr == NULL) {
        if (creator != NULL) {
            *out = *sched_of(creator);
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
    struct coop_sched from = { SCHED_OTHER, 0, true };
    return check_change(creator != NULL ? sched_of(creator) : &from, out->policy, out->priority);
}

void shim_sched_report(struct coop_greenlet *g, pthread_attr_t *attr)
{
    struct coop_sched *s = sched_of(g);
    struct sched_param param = { .sched_priority = s->priority };
    pthread_attr_setschedpolicy(attr, s->policy);
    pthread_attr_setschedparam(attr, &param);
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
