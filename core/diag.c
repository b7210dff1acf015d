/*
 * Seeing inside a cooperative program: the run-info dump (every greenlet, its state and
 * its stack, read by libunwind from the ucontext_t it was parked with), deadlock
 * detection, stack overflow reports and the statistics block printed at exit.
 */
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "internal.h"
#include "unwind.h"

#define MAX_FRAMES 32
#define DEADLOCK_STATUS 3

int64_t coop_coarse_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- writing reports: a line at a time, one write each --- */

struct report { char line[512]; int len; };

static void put(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->line + r->len, sizeof r->line - (size_t)r->len, fmt, ap);
    va_end(ap);
    r->len += n;
    if (r->len > (int)sizeof r->line - 1)
        r->len = (int)sizeof r->line - 1;
}

static void end_line(struct report *r)
{
    r->line[r->len++] = '\n';
    coop_write_stderr(r->line, (size_t)r->len);
    r->len = 0;
}

/* libcoop.so's code (the executable's, in the unit tests), found once at start: signal
 * handlers ask coop_in_runtime, and may not look modules up. */
static uintptr_t runtime_lo, runtime_hi;

static int find_runtime_code(struct dl_phdr_info *info, size_t size, void *unused)
{
    (void)size, (void)unused;
    uintptr_t self = (uintptr_t)coop_in_runtime;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && self - lo < ph->p_memsz) {
            runtime_lo = lo;
            runtime_hi = lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

void coop_runtime_code_init(void) { dl_iterate_phdr(find_runtime_code, NULL); }

bool coop_in_runtime(uintptr_t ip) { return ip - runtime_lo < runtime_hi - runtime_lo; }

void coop_runtime_code(uintptr_t *lo, uintptr_t *hi)
{
    *lo = runtime_lo;
    *hi = runtime_hi;
}

/* signal_frame: ctx is a signal handler's (an overflow report), which must not load
 * libunwind; coop_diag_prepare did before the first greenlet that could overflow. */
void coop_print_stack(ucontext_t *ctx, bool signal_frame)
{
    const struct coop_unwind *unw = coop_unwind(!signal_frame);
    if (unw == NULL)
        return;
    struct coop_unwind_window window = coop_unwind_begin();
    unw_cursor_t cursor;
    if (unw->init_local2(&cursor, (unw_context_t *)ctx, signal_frame ? UNW_INIT_SIGNAL_FRAME : 0) == 0) {
        struct report r = { .len = 0 };
        for (int depth = 0; depth < MAX_FRAMES; depth++) {
            unw_word_t ip, offset;
            char name[256];
            unw->get_reg(&cursor, UNW_REG_IP, &ip);
            if (!coop_in_runtime(ip)) {
                if (unw->get_proc_name(&cursor, name, sizeof name, &offset) == 0)
                    put(&r, "        at %s+0x%lx", name, (unsigned long)offset);
                else
                    put(&r, "        at 0x%lx", (unsigned long)ip);
                end_line(&r);
            }
            if (unw->step(&cursor) <= 0)
                break;
        }
    }
    coop_unwind_end(window);
}

/* --- the dump --- */

static void describe_wait(struct report *r, const struct coop_greenlet *g)
{
    const struct coop_wait_info *w = &g->waiting;
    switch (w->kind) {
    case WAIT_FD:
        put(r, " for fd %d %s%s", w->fd,
            w->events == (COOP_READ | COOP_WRITE) ? "read/write" : w->events & COOP_WRITE ? "write" : "read",
            w->nfds > 1 ? " (and more fds)" : "");
        break;
    case WAIT_SLEEP: break;
    case WAIT_PREEMPTED: return;    /* its deadline is the hub's next poll */

    case WAIT_PARK: put(r, ": blocked on %s %p", w->what ? w->what : "object", w->obj); break;
    case WAIT_JOIN: put(r, ": joining greenlet #%lu", (unsigned long)((const struct coop_greenlet *)w->obj)->id); break;
    case WAIT_OFFLOAD: put(r, " for the threadpool"); break;
    }
    if (__atomic_load_n(&g->timer_hub, __ATOMIC_RELAXED) != NULL)
        put(r, ", timeout in %.0f ms", (double)(g->deadline - coop_now()) / 1e6);
}

static void let_go(struct coop_greenlet *g) { atomic_fetch_and(&g->wait_word, ~(uint64_t)WAIT_DUMPING); }

/* Holds back wakes of a waiting greenlet while its stack is read; its context must be
 * saved (off its hub's CPU). A greenlet still on its way there may be about to cancel its
 * wait, which waits for the dump: after a short while, the dump gives up on its stack.
 * False if it is not waiting (any more). */
static bool hold_waiting(struct coop_greenlet *g)
{
    uint64_t word = atomic_load(&g->wait_word);
    do {
        if (!(word & WAIT_WAITING) || (word & WAIT_DUMPING))
            return false;
    } while (!atomic_compare_exchange_weak(&g->wait_word, &word, word | WAIT_DUMPING));
    for (int spins = 0; atomic_load_explicit(&g->on_cpu, memory_order_acquire); spins++) {
        if (spins == 100000) {
            let_go(g);
            return false;
        }
        __builtin_ia32_pause();
    }
    return true;
}

static const char *hub_state_name(const struct coop_hub *h)
{
    switch (atomic_load(&h->state)) {
    case HUB_SLEEPING: return "sleeping";
    case HUB_NOTIFIED: return "waking up";
    default: return "running";
    }
}

static void dump_hubs(struct report *r)
{
    int n = coop_hub_total(), regular = coop_sched_regular_hubs();
    put(r, "coop: greenlets of %d hub%s", n < regular ? n : regular, regular == 1 ? "" : "s");
    if (n > regular)
        put(r, " and %d spare thread%s", n - regular, n - regular == 1 ? "" : "s");
    put(r, " (pid %d):", (int)getpid());
    end_line(r);
    for (int i = 0; i < n; i++) {
        struct coop_hub *h = coop_hub_at(i);
        struct coop_greenlet *cur = h->current;
        const char *away = coop_sched_away_reason(h);
        put(r, "  hub %d%s on thread %d: ", i, h->spare ? " (spare)" : "", (int)h->tid);
        if (away != NULL)
            put(r, "away, %s: its work went to another hub", away);
        else
            put(r, "%s", hub_state_name(h));
        put(r, ", %u ready, %lu switches", coop_sched_ready_count(h), (unsigned long)atomic_load(&h->switches));
        if (cur != NULL && !cur->is_hub)
            put(r, ", running #%lu", (unsigned long)cur->id);
        if (atomic_load(&h->handoffs) > 0)
            put(r, ", handed off %lu times", (unsigned long)atomic_load(&h->handoffs));
        end_line(r);
    }
}

void coop_dump_all(void)
{
    struct report r = { .len = 0 };
    int64_t now = coop_coarse_now();
    dump_hubs(&r);
    coop_all_lock();
    for (struct coop_greenlet *g = coop_all_first(); g != NULL; g = g->all_next) {
        if (g->is_hub)
            continue;
        bool held = coop_gstate_get(g) == G_WAITING && hold_waiting(g);
        enum coop_gstate state = coop_gstate_get(g);
        bool stack = held;                   /* only a held context stays still while read */
        put(&r, "  #%lu%s%s%s%s ", (unsigned long)g->id, g->name[0] ? " \"" : "", g->name,
            g->name[0] ? "\"" : "", g->is_main ? " (main)" : "");
        switch (state) {
        case G_READY: put(&r, "ready"); break;
        case G_RUNNING: put(&r, "running on hub %d", g->hub->index); break;
        case G_FINISHED: put(&r, "finished"); break;
        case G_WAITING:
            put(&r, "%s", g->waiting.kind == WAIT_SLEEP ? "sleeping"
                          : g->waiting.kind == WAIT_PREEMPTED ? "preempted" : "waiting");
            describe_wait(&r, g);
            break;
        }
        put(&r, ", for %.3f s", (double)(now - g->since) / 1e9);
        end_line(&r);
        if (stack)
            coop_print_stack(&g->ctx, false);
        if (held)
            let_go(g);
    }
    coop_all_unlock();
}

/* --- deadlock --- */

int coop_os_threads(void)
{
    /* The link count of a process's task directory is 2 plus its threads: one stat, where
     * /proc/self/stat costs the kernel a whole report (30 us at every start-up). */
    struct stat st;
    if (stat("/proc/self/task", &st) == 0 && st.st_nlink > 2)
        return (int)st.st_nlink - 2;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return -1;
    int n = -1;
    /* Field 20; the command name (field 2) may hold spaces, so skip past its ')'. */
    if (fscanf(f, "%*d (%*[^)]) %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %d", &n) != 1)
        n = -1;
    fclose(f);
    return n;
}

static int runtime_threads(void)
{
    return coop_offload_threads() + coop_monitor_threads() + coop_sched_threads() + coop_trace_threads();
}

/* A program that installed a handler may be woken by a signal (the "wait for SIGTERM"
 * pattern): it is never declared dead. */
static bool signal_handlers;

void coop_note_signal_handler(void) { signal_handlers = true; }

/* Whether a signal could still end the wait, as POSIX says it would: a handler installed
 * behind coop's back (sigset, or before coop started), a signal pending, or a timer armed
 * that will send one (alarm and setitimer; timer_create's timers, listed in /proc). */
static bool signal_may_come(void)
{
    /* Faults come from a running thread; with every greenlet asleep, none can. */
    const uint64_t faults = 1ULL << (SIGSEGV - 1) | 1ULL << (SIGBUS - 1) | 1ULL << (SIGFPE - 1)
                            | 1ULL << (SIGILL - 1) | 1ULL << (SIGTRAP - 1) | 1ULL << (SIGSYS - 1)
                            | 1ULL << (SIGPIPE - 1);
    const uint64_t ignored = faults | coop_runtime_signals();
    for (int sig = 1; sig < 65; sig++) {
        struct sigaction sa;
        if (!(ignored & 1ULL << (sig - 1)) && sig != SIGKILL && sig != SIGSTOP
            && coop_settings.os_sigaction(sig, NULL, &sa) == 0
            && sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN
            && !coop_trace_is_handler((void *)sa.sa_handler))    /* the default action, flushed first */
            return true;
    }
    uint64_t pending = 0;
    if (coop_sys(SYS_rt_sigpending, &pending, 8, 0) == 0 && pending != 0)
        return true;
    for (int which = ITIMER_REAL; which <= ITIMER_PROF; which++) {
        struct itimerval it;
        if (coop_sys(SYS_getitimer, which, &it, 0) == 0 && (it.it_value.tv_sec || it.it_value.tv_usec))
            return true;
    }
    /* A timer of the runtime's own (the profiler's) sends a runtime signal: not one. */
    FILE *timers = fopen("/proc/self/timers", "r");
    if (timers == NULL)
        return false;
    bool any = false;
    int timer_signal;
    char line[128];
    while (!any && fgets(line, sizeof line, timers) != NULL)
        any = sscanf(line, "signal: %d/", &timer_signal) == 1 && timer_signal > 0 && timer_signal < 65
              && !(ignored & 1ULL << (timer_signal - 1));
    fclose(timers);
    return any;
}

static uint64_t all_switches(void)
{
    uint64_t sum = 0;
    for (int i = 0; i < coop_hub_total(); i++)
        sum += atomic_load(&coop_hub_at(i)->switches);
    return sum;
}

/* Every program greenlet waits on a sync object or a join with no timeout. */
static bool all_parked_for_good(void)
{
    bool any = false;
    coop_all_lock();
    for (struct coop_greenlet *g = coop_all_first(); g != NULL; g = g->all_next) {
        if (g->is_hub || coop_gstate_get(g) == G_FINISHED)
            continue;
        if (coop_gstate_get(g) != G_WAITING || __atomic_load_n(&g->timer_hub, __ATOMIC_RELAXED) != NULL
            || atomic_load(&g->interrupt) != 0
            || (g->waiting.kind != WAIT_PARK && g->waiting.kind != WAIT_JOIN)) {
            any = false;
            break;
        }
        any = true;
    }
    coop_all_unlock();
    return any;
}

/*
 * Dead when every greenlet waits on a sync object or a join with no timeout, every hub
 * sleeps with nothing queued, no signal could still come, and no other OS thread exists
 * that might still post (libuv's idle workers, the hubs' threads and coop's monitor
 * cannot). The greenlets' states are read while other hubs may still be switching: the
 * sum of all hubs' switch counters, unchanged across the scan, says nothing ran meanwhile
 * (a greenlet that was running when the scan began shows as running, or switched away).
 * The last hub to fall asleep sees it. The report leaves the program as POSIX would,
 * waiting (where a signal with its default action, or a debugger, can still end it),
 * unless COOP_ON_DEADLOCK=exit asks for exit status 3.
 */
void coop_check_deadlock(struct coop_hub *h)
{
    static _Atomic bool reported;
    if (atomic_load(&reported) || signal_handlers || !coop_sched_all_idle(h))
        return;
    uint64_t before = all_switches();
    if (!all_parked_for_good() || all_switches() != before || !coop_sched_all_idle(h))
        return;
    if (coop_os_threads() != 1 + runtime_threads() || signal_may_come() || atomic_exchange(&reported, true))
        return;
    coop_log(COOP_LOG_ERROR, "all greenlets are asleep - deadlock!");
    coop_dump_all();
    if (!coop_settings.on_deadlock_exit) {
        coop_log(COOP_LOG_ERROR, "waiting, as the program would without coop (pid %d; COOP_ON_DEADLOCK=exit "
                 "exits with status 3)", (int)getpid());
        return;
    }
    coop_trace_finish();          /* the waits that make the deadlock, in the timeline */
    _exit(DEADLOCK_STATUS);
}

/* --- stack overflow --- */

bool coop_stack_overflowed(const siginfo_t *info, void *context)
{
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL || info->si_signo != SIGSEGV || !coop_stack_in_guard(&h->current->stack, info->si_addr))
        return false;
    struct coop_greenlet *g = h->current;
    coop_log(COOP_LOG_ERROR, "greenlet #%lu \"%s\" overflowed its %zu KiB stack",
             (unsigned long)g->id, g->name, g->stack.size / 1024);
    coop_print_stack(context, true);
    coop_log(COOP_LOG_ERROR, "raise COOP_STACK_SIZE (now %zu KiB) or the thread's stack size attribute",
             coop_stack_default_size() / 1024);
    return true;
}

/* With no handler of the program's own: report an overflow, then fault again with the
 * default action, so the process dies by SIGSEGV and may dump core as before. */
static void on_segv(int sig, siginfo_t *info, void *context)
{
    coop_stack_overflowed(info, context);
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    coop_settings.os_sigaction(sig, &dfl, NULL);
    if (info->si_code <= 0)      /* sent by kill(): no fault will repeat, so send it again */
        coop_sys(SYS_tgkill, getpid(), coop_sys(SYS_gettid, 0, 0, 0), sig);
}

void coop_overflow_handler_install(void)
{
    struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER };
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    if (coop_settings.os_sigaction(SIGSEGV, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        coop_settings.os_sigaction(SIGSEGV, &sa, NULL);
}

bool coop_is_overflow_handler(const void *handler) { return handler == (const void *)on_segv; }

/* An overflow runs out of stack: the report runs on an alternate one, one per hub thread,
 * unless the thread has one already (a sanitizer's, Rust's). */
void coop_diag_hub_init(struct coop_hub *h)
{
    coop_trace_hub_init(h);
    stack_t old;    /* raw system calls: sigaltstack is interposed, for the program's greenlets */
    bool mapped = false;
    if (coop_sys(SYS_sigaltstack, NULL, &old, 0) == 0 && (old.ss_flags & SS_DISABLE)) {
        stack_t ss = { .ss_sp = coop_map_signal_stack(), .ss_size = COOP_SIGNAL_STACK_SIZE };
        mapped = ss.ss_sp != NULL && coop_sys(SYS_sigaltstack, &ss, NULL, 0) == 0;
        if (ss.ss_sp != NULL && !mapped)
            coop_sys(SYS_munmap, (long)ss.ss_sp, COOP_SIGNAL_STACK_SIZE, 0);
    }
    coop_preempt_keep_signal_stack(h, mapped);
}

/* --- statistics --- */

static _Atomic uint64_t created, peak_alive;

void coop_stats_spawned(long alive)
{
    atomic_fetch_add(&created, 1);
    uint64_t peak = atomic_load(&peak_alive);
    while ((uint64_t)alive > peak && !atomic_compare_exchange_weak(&peak_alive, &peak, (uint64_t)alive))
        ;
}

/* Each hub keeps its own longest run: no shared write per switch. */
void coop_stats_switch(struct coop_hub *h, struct coop_greenlet *from, struct coop_greenlet *to)
{
    int64_t now = coop_now();
    if (!from->is_hub && from->switched_in != 0 && now - (int64_t)from->switched_in > h->longest_run) {
        h->longest_run = now - (int64_t)from->switched_in;
        h->longest_id = from->id;
        memcpy(h->longest_name, from->name, sizeof h->longest_name);
    }
    to->switched_in = (uint64_t)now;
}

static void print_stats(void)
{
    uint64_t switches = 0, passes = 0;
    struct coop_hub *longest = NULL;
    for (int i = 0; i < coop_hub_total(); i++) {
        struct coop_hub *h = coop_hub_at(i);
        switches += atomic_load(&h->switches);
        passes += h->passes;
        if (longest == NULL || h->longest_run > longest->longest_run)
            longest = h;
    }
    struct coop_sched_stats s;
    coop_sched_stats(&s);
    coop_log(COOP_LOG_ERROR, "stats: greenlets created %lu, peak alive %lu, switches %lu, loop iterations %lu",
             (unsigned long)created, (unsigned long)peak_alive, (unsigned long)switches, (unsigned long)passes);
    coop_log(COOP_LOG_ERROR, "stats: hubs %d, spare threads started %lu (running %d), handoffs %lu, steals %lu (%lu greenlets)",
             s.regular, (unsigned long)s.spares_started, s.spares_running, (unsigned long)s.handoffs,
             (unsigned long)s.steals, (unsigned long)s.stolen);
    coop_log(COOP_LOG_ERROR, "stats: longest run without yielding %.3f ms, by greenlet #%lu \"%s\"",
             (double)longest->longest_run / 1e6, (unsigned long)longest->longest_id, longest->longest_name);
    coop_preempt_print_stats();
}

void coop_stats_init(void)
{
    peak_alive = 1;
    atexit(print_stats);
}
