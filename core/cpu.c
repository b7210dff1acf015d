/*
 * CPU time per greenlet. The kernel keeps a CPU clock per OS thread only, so a hub charges
 * its OS thread's CPU time to each greenlet as it switches away from it. Reading that clock
 * is a system call, so charging starts when the program first asks for a greenlet's CPU
 * time; the main thread's OS thread's time until then is the main greenlet's, as a new
 * thread's clock starts near zero (taken once, as charging starts, whichever hub the main
 * greenlet is on). A greenlet runs on one hub at a time, so only that hub adds to its
 * time; others read it as of its last switch.
 *
 * Numbers: small integers naming live greenlets, for interfaces that need an int (the shim's
 * CPU clock ids); a greenlet's number goes when it ends, as a thread's clock does, and an
 * ended greenlet gets none again (-1), though another hub may ask as it ends: a number
 * given then would name it for ever. g->number is set from 0 by compare-and-swap, to a
 * number under numbers_lock (coop_greenlet_number) or to -1 by the ending greenlet
 * (coop_greenlet_unnumber), so that an ending greenlet that was never numbered takes no
 * lock; a positive number is cleared only by its greenlet's end, under the lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

_Atomic bool coop_cpu_charging;

static int64_t cpu_ns(clockid_t clock)
{
    struct timespec ts;
    coop_sys(SYS_clock_gettime, clock, &ts, 0);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void coop_cpu_charge_now(struct coop_hub *h, struct coop_greenlet *running)
{
    int64_t now = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    if (h->cpu_mark != 0)
        running->cpu_ns += now - h->cpu_mark;
    h->cpu_mark = now;
}

/* The main greenlet takes the time of the main thread's OS thread so far, before any hub
 * may charge it: under a lock, so that a second asker waits for it. */
static coop_lock_t charging_lock;

static void start_charging(void)
{
    if (atomic_load(&coop_cpu_charging))
        return;
    coop_lock(&charging_lock);
    if (!atomic_load(&coop_cpu_charging)) {
        /* The kernel's clock id of another thread's CPU time (CPUCLOCK_PERTHREAD, SCHED). */
        clockid_t main_thread = (clockid_t)((~(unsigned)coop_hub_at(0)->tid << 3) | 6);
        if (coop_main_greenlet != NULL)
            coop_main_greenlet->cpu_ns += cpu_ns(main_thread);
        atomic_store(&coop_cpu_charging, true);
    }
    coop_unlock(&charging_lock);
}

int64_t coop_greenlet_cpu_ns(struct coop_greenlet *g)
{
    struct coop_hub *h = coop_thread.hub;
    start_charging();
    if (h != NULL && h == g->hub)
        coop_cpu_charge_now(h, h->current);    /* brings the caller's own time up to date */
    return g->cpu_ns;                      /* another hub's: as of its last switch */
}

static coop_lock_t numbers_lock;
static struct coop_greenlet **numbered;    /* by number; [0] unused */
static int numbered_len, numbered_cap, lowest_free = 1;

int coop_greenlet_number(struct coop_greenlet *g)
{
    coop_lock(&numbers_lock);
    if (__atomic_load_n(&g->number, __ATOMIC_ACQUIRE) == 0) {
        int n = lowest_free, none = 0;
        while (n < numbered_len && numbered[n] != NULL)
            n++;
        if (n >= numbered_cap) {
            int cap = numbered_cap ? numbered_cap * 2 : 64;
            struct coop_greenlet **grown = realloc(numbered, (size_t)cap * sizeof *grown);
            if (grown != NULL) {
                numbered = grown;
                numbered_cap = cap;
            }
        }
        if (n < numbered_cap && __atomic_compare_exchange_n(&g->number, &none, n, false, __ATOMIC_ACQ_REL,
                                                            __ATOMIC_ACQUIRE)) {
            numbered[n] = g;
            lowest_free = n + 1;
            numbered_len = n >= numbered_len ? n + 1 : numbered_len;
        }
    }
    coop_unlock(&numbers_lock);
    return __atomic_load_n(&g->number, __ATOMIC_ACQUIRE);
}

/* Another hub's thread may have held the numbers' lock at the fork. No thread's clock
 * lives on in the child: the others are gone, and its one thread is a new one, with a new
 * tid natively, which asks for a number anew. Slots past numbered_len are never read, and
 * each is written before numbered_len grows over it. */
void coop_cpu_fork_child(struct coop_greenlet *self)
{
    numbers_lock = (coop_lock_t){ 0 };
    charging_lock = (coop_lock_t){ 0 };
    numbered_len = 0;
    lowest_free = 1;
    self->number = 0;
}

struct coop_greenlet *coop_greenlet_numbered(int n)
{
    coop_lock(&numbers_lock);
    struct coop_greenlet *g = n > 0 && n < numbered_len ? numbered[n] : NULL;
    coop_unlock(&numbers_lock);
    return g;
}

void coop_greenlet_unnumber(struct coop_greenlet *g)
{
    int n = 0;
    if (__atomic_compare_exchange_n(&g->number, &n, -1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    coop_lock(&numbers_lock);
    numbered[n] = NULL;
    if (n < lowest_free)
        lowest_free = n;
    __atomic_store_n(&g->number, -1, __ATOMIC_RELEASE);
    coop_unlock(&numbers_lock);
}
