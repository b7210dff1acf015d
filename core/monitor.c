/*
 * The monitor (gevent's monitor thread, Go's sysmon): one real thread that watches each
 * hub's switch counter, for three jobs:
 *   - handoff (sched.c): a hub whose counter stands still for COOP_HANDOFF_MS (default 2;
 *     0: never) while its thread sleeps in the kernel (a CPU clock that hardly moves, and
 *     state S or D in /proc/self/task/TID/stat, or the clock alone where the program has no
 *     descriptor free), and has been found asleep at every look over the last half of that
 *     time at least, is stuck in a system call coop could not make cooperative; its work
 *     goes to another hub, and comes back when its counter moves again. (Asleep at one look
 *     is not enough: a greenlet that computed most of the time and then waits a moment for
 *     a malloc arena's lock, held by another hub's thread, would be handed off, and the spare
 *     would compete with that holder for the CPUs: stunnel, README.) So does
 *     the work of a hub whose greenlet computes where it cannot be preempted, from
 *     COOP_HANDOFF_MS past its slice, while greenlets wait that only that hub can run, or
 *     while work that any hub may take has been seen for STILL_NS. A hub that stands still
 *     for 2 ms on the CPU with greenlets queued gets a sleeping hub woken to steal them, in
 *     case a wake was missed or skipped (a small batch of fd wakes, sched.c);
 *   - preemption (COOP_PREEMPT_MS, core/preempt.c): a greenlet that has kept its hub on the
 *     CPU for a whole time slice while other greenlets exist is asked to leave, by a signal
 *     to the hub's thread; after a millisecond already when greenlets wait in the hub's
 *     inbox, which no other hub may take, while another hub sleeps, or when a deadline in
 *     its timer heap has passed: that greenlet's wait is over, and only this hub's poll
 *     ends it (as the kernel's scheduler lets a thread whose sleep ended preempt one that
 *     computes; a 1 ms sleep beside a computing thread lasted a whole slice);
 *   - reports (COOP_MAX_BLOCKING_MS): a program greenlet that keeps its hub for longer than
 *     that (by computing where it cannot be preempted, or in a system call while other
 *     greenlets wait) is reported once per episode, with its stack sampled on its own thread
 *     (a signal makes the hub's thread unwind itself), with the handoff that happened
 *     meanwhile, and, with preemption on, why it was not preempted. Unasked, one that
 *     computes where it cannot be preempted for UNPREEMPTIBLE_WARN_NS while greenlets wait
 *     that only its hub can run (or work for any hub waits) is named in a warning, once in
 *     its life: where handoff is off or finds no thread, a spin-wait in code without unwind
 *     information would otherwise hang a program on one hub silently.
 * It starts with the scheduler (the program's first thread): a program with one greenlet
 * has nothing to hand off or preempt and gets no extra thread (nor the handler, nor
 * libunwind's warm-up and its pipe), unless reports are asked for (a lone greenlet can
 * block too). A forked child starts its own with its first thread. It is named
 * coop-monitor from its first instant, so that whoever counts a program's threads can tell
 * it apart, and it blocks the program's signals, so that none is delivered to it.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <fcntl.h>

#include "internal.h"
#include "unwind.h"

#define SAMPLE_SIGNAL (SIGRTMAX - 3)
#define SAMPLE_FRAMES 24
#define MIN_TICK_NS 1000000
/* A preemption that was refused is asked again this soon, then twice as late each time up
 * to a tick: most refusals catch a greenlet inside libc for a moment (clock_gettime, memcpy),
 * while some last (a FILE lock held, code that cannot be unwound). */
#define FIRST_RETRY_NS 250000

#define BUSY_TICK_NS 1000000          /* while a hub runs greenlets */
#define IDLE_TICK_NS 20000000         /* while every hub sleeps */
#define STILL_NS 2000000              /* a hub held this long is looked at (and nudged); one
                                         * from half of COOP_HANDOFF_MS for whether it sleeps */
#define EARLY_SLICE_NS 1000000        /* while greenlets wait in the inbox, or a deadline passed */
#define UNPREEMPTIBLE_WARN_NS 1000000000  /* held that long, unpreemptible, others waiting: said */

static int64_t max_blocking_ns, preempt_ns, handoff_ns;
static _Atomic bool running;
static _Atomic bool start_failed;

/* The sample, written by the handler on the hub's thread, read by the monitor, which names
 * the frames: the handler may have interrupted malloc, which libunwind's naming calls. */
static uintptr_t sample[SAMPLE_FRAMES];

static _Atomic int sample_frames = -1;

int coop_monitor_threads(void) { return atomic_load(&running) ? 1 : 0; }

static void take_sample(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)info;
    const struct coop_unwind *unw = coop_unwind(false);   /* loaded by coop_monitor_init */
    unw_cursor_t cursor;
    int n = 0, saved_errno = errno;     /* libunwind's calls may set it */
    struct coop_unwind_window window = coop_unwind_begin();
    if (unw != NULL && unw->init_local2(&cursor, context, UNW_INIT_SIGNAL_FRAME) == 0) {
        do {
            unw_word_t ip;
            unw->get_reg(&cursor, UNW_REG_IP, &ip);
            sample[n++] = ip;
        } while (n < SAMPLE_FRAMES && unw->step(&cursor) > 0);
    }
    coop_unwind_end(window);
    atomic_store(&sample_frames, n);
    errno = saved_errno;
}

/*
 * The monitor looks at its hubs' files in /proc often, and each stays open, moved up among
 * the runtime's fds: one opened for each look held the lowest free fd for a moment, which a
 * program's thread opening a file meanwhile then did not get (close_all's "first fd after a
 * thread" got 4 in a stress run; a daemon that closes 0 and opens /dev/null counts on it).
 * Only the monitor's thread touches them; a fork's child closes its parent's.
 */
#define TASK_FILES_MAX (2 * COOP_MAX_HUBS)
static struct task_file { pid_t tid; char name[8]; int fd; } task_files[TASK_FILES_MAX];   /* name "": free */
static unsigned task_files_reused;

static void forget_task_file(struct task_file *f)
{
    if (f->fd >= 0)
        coop_runtime_fd_close(f->fd);
    f->name[0] = '\0';
}

static struct task_file *task_file(pid_t tid, const char *name)
{
    if (strlen(name) >= sizeof task_files[0].name)
        return NULL;
    struct task_file *free_one = NULL;
    for (struct task_file *f = task_files; f < task_files + TASK_FILES_MAX; f++) {
        if (f->name[0] != '\0' && f->tid == tid && strcmp(f->name, name) == 0)
            return f;
        if (f->name[0] == '\0' && free_one == NULL)
            free_one = f;
    }
    if (free_one == NULL) {         /* threads gone: one of theirs goes */
        free_one = &task_files[task_files_reused++ % TASK_FILES_MAX];
        forget_task_file(free_one);
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, name);
    int fd = (int)coop_sys(SYS_open, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    *free_one = (struct task_file){ .tid = tid, .fd = coop_runtime_fd_take(fd) };
    strcpy(free_one->name, name);
    return free_one;
}

/* The start of one of an OS thread's files in /proc/self/task/TID, NUL-terminated, by
 * system calls (the monitor's thread takes no lock of libc's); false if unreadable. */
bool coop_read_task_file(pid_t tid, const char *name, char *buf, size_t size)
{
    struct task_file *f = task_file(tid, name);
    if (f == NULL)
        return false;
    long len = coop_sys6(SYS_pread64, f->fd, (long)buf, (long)(size - 1), 0, 0, 0);
    if (len <= 0) {         /* the thread has ended (its id may come back), or the fd was closed */
        if (len == -EBADF)
            f->fd = -1;
        forget_task_file(f);
        return false;
    }
    buf[len] = '\0';
    return true;
}

/* The state letter of an OS thread of this process in /proc (R running, S or D asleep in
 * the kernel), or 0. */
static char proc_state(pid_t tid)
{
    char buf[256];
    if (!coop_read_task_file(tid, "stat", buf, sizeof buf))
        return 0;
    const char *end = strrchr(buf, ')');
    return end != NULL && end[1] == ' ' ? end[2] : 0;
}

/* A frame of the sample: the interrupted instruction, or a return address, which is named
 * after the call before it (the call may be a function's last instruction). */
static void print_frame(uintptr_t ip, bool interrupted)
{
    char name[128], line[160];
    uintptr_t before = interrupted ? 0 : 1, offset;
    if (coop_unwind_symbol(ip - before, name, sizeof name, &offset))
        snprintf(line, sizeof line, "        at %s+0x%lx\n", name, (unsigned long)(offset + before));
    else
        snprintf(line, sizeof line, "        at 0x%lx\n", (unsigned long)ip);
    coop_write_stderr(line, strlen(line));
}

static void report(struct coop_hub *h, struct coop_greenlet *g, int64_t held, uint64_t switches, char state)
{
    coop_log(COOP_LOG_ERROR, "greenlet #%lu \"%s\" has kept its hub for %.0f ms without yielding (COOP_MAX_BLOCKING_MS=%.0f)",
             (unsigned long)g->id, g->name, (double)held / 1e6, (double)max_blocking_ns / 1e6);
    if (coop_sched_is_away(h))
        coop_log(COOP_LOG_ERROR, "it %s (thread state %c): hub %d's other greenlets, fds and timers were handed "
                 "to another hub", state == 'R' ? "computes" : "is blocked in a system call", state != 0 ? state : '?',
                 h->index);
    if (coop_trace_enabled())
        coop_trace_instant(g, COOP_TRACE_BLOCKING, (uint64_t)held);
    /* Why it was not preempted, before the sample: an attempt during the sample would find the
     * thread in the sampling handler, not in the greenlet's own code. */
    char why[256];
    bool not_preempted = preempt_ns > 0 && state == 'R' && coop_preempt_why_not(h, switches, why, sizeof why);
    atomic_store(&sample_frames, -1);
    /* A thread that holds the signal for its greenlet (preempt.c) would take it late. */
    bool asked = !atomic_load_explicit(&h->preempt.interrupts_held, memory_order_relaxed)
                 && coop_sys(SYS_tgkill, getpid(), h->tid, SAMPLE_SIGNAL) == 0;
    for (int i = 0; asked && i < 200 && atomic_load(&sample_frames) < 0; i++) {
        struct timespec ms = { 0, 1000000 };
        coop_sys(SYS_nanosleep, &ms, NULL, 0);
    }
    int n = atomic_load(&sample_frames);
    for (int i = 0; i < n; i++)
        if (!coop_in_runtime(sample[i]))
            print_frame(sample[i], i == 0);
    if (not_preempted)
        coop_log(COOP_LOG_ERROR, "greenlet #%lu was not preempted (COOP_PREEMPT_MS=%.0f): %s",
                 (unsigned long)g->id, (double)preempt_ns / 1e6, why);
}

/* The tick while hubs run greenlets: short enough for the handoff, for a slice to end at
 * most half a slice late, and a report at most a quarter of its limit late. */
static int64_t busy_tick_ns(void)
{
    int64_t tick = BUSY_TICK_NS;
    if (max_blocking_ns > 0 && max_blocking_ns / 4 < tick)
        tick = max_blocking_ns / 4;
    if (preempt_ns > 0 && preempt_ns / 2 < tick)
        tick = preempt_ns / 2;
    return tick > MIN_TICK_NS ? tick : MIN_TICK_NS;
}

struct watch {
    struct coop_hub *hub;
    uint64_t switches;
    int64_t since;           /* when the monitor first saw this switch count */
    bool reported, handed_off;
    int64_t next_ask, retry_ns;   /* preemption asked: when to ask again */
    int64_t cpu_ns, cpu_at;  /* the hub thread's CPU time, and when it was read (thread_state) */
    int64_t asleep_since;    /* the first of the latest looks that all found it asleep, or 0 */
};

/* The hub's thread's state letter: R running (or waiting for a CPU), S or D asleep in the
 * kernel; 0 at the first look of an episode (the watch is new at each switch) when /proc
 * cannot say, and when the thread is gone. The thread's CPU clock comes first, as it costs
 * one system call and no descriptor, where /proc costs three and a path walk, and a hub
 * that computes is looked at every tick: a thread that ran for a quarter of the time since
 * the last look or more is running. Otherwise /proc/self/task/TID/stat tells asleep from
 * waiting for a CPU. Where /proc cannot be read (a program at its RLIMIT_NOFILE, when
 * handoff matters most for the fds of a stuck hub; no /proc in a container), the clock
 * alone says asleep (the signals that the monitor itself sends it run a handler for a few
 * microseconds each): a thread that waits for a CPU then has its work handed off early,
 * and is neither nudged nor asked to leave that time. */
static char thread_state(struct watch *w, pid_t tid)
{
    struct timespec ts;
    clockid_t cpu_clock = (clockid_t)((~(unsigned)tid << 3) | 6);     /* the kernel's CPUCLOCK_SCHED of a thread */
    if (coop_sys(SYS_clock_gettime, cpu_clock, &ts, 0) != 0)
        return proc_state(tid);
    int64_t now = coop_now(), cpu_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    int64_t ran = cpu_ns - w->cpu_ns, over = now - w->cpu_at;
    bool first = w->cpu_at == 0;
    w->cpu_ns = cpu_ns;
    w->cpu_at = now;
    if (!first && ran * 4 >= over)
        return 'R';
    char state = proc_state(tid);
    return state != 0 ? state : first ? 0 : 'S';
}

/* Since when the monitor has seen work that any hub may take (sched.c) at every tick, or 0;
 * only the monitor's thread reads and writes it. */
static int64_t any_work_since;

/* Greenlets that only h can run wait for it: in its queue (a thief would have taken them
 * had another hub been free), in its inbox, or woken by a deadline or an fd event that
 * only its poll takes; and so do those of a hub h adopted, which only h takes while it
 * holds them (a spare that adopted hub 0, the main greenlet's, and then ran a greenlet
 * that computes where it cannot be preempted: main waited for ever, another hub idle),
 * whether that hub is still away or back: until h lets it go, or a hub answering a new
 * hand-off of it takes it, what h holds of it waits for h (counted only while away, a stop
 * of the world on three hubs hung again in 1 of 25 runs).
 * adopter is read as sched.c publishes it; a hub let go of meanwhile is judged next tick.
 * Work that any hub may take counts too once the monitor has seen such work at every tick
 * for STILL_NS: the hubs that were to take it at their next iteration may be held as well,
 * and no spare starts while they count as active. Mono's computing threads, each with a
 * signal stack, held every hub, and the interrupts that end its waiting workers' waits for
 * its stop signals' handlers waited for ever (test_mono); so did a hub handed off that
 * nobody adopted, beside one such thread more than hubs (thread_signals world-stop). */
static bool others_wait_for(struct coop_hub *h, int64_t now)
{
    if (coop_sched_queued_on(h) || coop_timer_next(h) <= now || coop_hub_events_wait(h)
        || (any_work_since != 0 && now - any_work_since >= STILL_NS))
        return true;
    for (struct coop_hub *x = coop_hub_at(0); x != NULL; x = coop_hub_next(x))
        if (x != h && atomic_load(&x->adopter) == h && (coop_sched_queued_on(x) || coop_hub_events_wait(x)))
            return true;
    return false;
}

/* Said once an attempt's refusal is known. The look at /proc takes a while: g is read only
 * if it still holds h (a greenlet is freed only once it has left its hub). */
static void warn_unpreemptible(struct coop_hub *h, struct coop_greenlet *g, int64_t held, uint64_t switches)
{
    char why[256];
    if (!coop_preempt_why_not(h, switches, why, sizeof why) || atomic_load(&h->switches) != switches)
        return;
    g->said_unpreemptible = true;
    coop_warn("greenlet #%lu \"%s\" has kept hub %d for %.0f ms while others wait for it, and "
              "cannot be preempted: %s (COOP_MAX_BLOCKING_MS=MS reports its stack)",
              (unsigned long)g->id, g->name, h->index, (double)held / 1e6, why);
}

static void hand_off(struct watch *w, struct coop_greenlet *g, int64_t held, enum coop_hub_away why)
{
    struct coop_hub *h = w->hub;
    w->handed_off = true;
    if (!coop_sched_hand_off(h, why))
        return;
    coop_info("hub %d is %s (greenlet #%lu \"%s\", for %.0f ms): its work goes to another hub", h->index,
              coop_sched_away_reason(h), (unsigned long)g->id, g->name, (double)held / 1e6);
    if (coop_trace_enabled())
        coop_trace_instant(g, COOP_TRACE_HANDOFF, (uint64_t)h->index);
}

/* Whether the greenlet on the CPU has kept w's hub for a handoff past its whole slice where
 * an attempt to preempt it was refused (or none can be made), while greenlets wait that
 * only that hub can run: the kernel's scheduler then shares the CPU between it and them, as
 * between threads, instead of leaving them to wait for it. */
static bool unpreemptible_for_long(struct watch *w, int64_t held, int64_t now)
{
    return handoff_ns > 0 && preempt_ns > 0 && held >= preempt_ns + handoff_ns
           && coop_preempt_refused(w->hub, w->switches) && others_wait_for(w->hub, now);
}

/* One look at a hub whose greenlet g has held it since w->since. */
static void watch_holder(struct watch *w, struct coop_greenlet *g, int64_t now, int64_t tick)
{
    struct coop_hub *h = w->hub;
    int64_t held = now - w->since;
    int64_t slice = preempt_ns;
    if (slice > EARLY_SLICE_NS && held >= EARLY_SLICE_NS
        && (coop_sched_inbox_waits(h) || coop_timer_next(h) <= now))
        slice = EARLY_SLICE_NS;
    bool handoff_due = handoff_ns > 0 && held >= handoff_ns;
    bool due = held >= STILL_NS || handoff_due || (slice != 0 && held >= slice);
    if (!due && !(handoff_ns > 0 && held >= handoff_ns / 2))    /* that look: asleep_since */
        return;
    bool alone = coop_alone();
    char state = thread_state(w, h->tid);
    bool asleep = state == 'S' || state == 'D';
    if (!asleep)
        w->asleep_since = 0;
    else if (w->asleep_since == 0)
        w->asleep_since = now;
    coop_signal_kick_again(g);      /* asleep in the kernel or computing: see the shim */
    if (alone && asleep) {
        /* Asleep in a real system call, a lone greenlet keeps nobody waiting: its hold counts
         * from when it has company, not from a server's long wait for its first client. */
        if (due)
            w->since = now;
        return;
    }
    if (asleep && !w->handed_off && handoff_due && now - w->asleep_since >= handoff_ns / 2) {
        hand_off(w, g, held, AWAY_BLOCKED);
    } else if (state == 'R' && due) {
        coop_sched_nudge(h);
        /* Judged on the attempts so far, before another that may still succeed. */
        if (!w->handed_off && !alone && unpreemptible_for_long(w, held, now)) {
            hand_off(w, g, held, AWAY_UNPREEMPTIBLE);
            /* One held hub at a time for work any hub may take: its adopter may take it. */
            if (any_work_since != 0)
                any_work_since = now;
        }
        if (slice > 0 && held >= slice && now >= w->next_ask && !alone) {
            coop_preempt_ask(h, w->switches);
            w->retry_ns = w->retry_ns == 0 ? FIRST_RETRY_NS : w->retry_ns * 2 < tick ? w->retry_ns * 2 : tick;
            w->next_ask = now + w->retry_ns;
        }
    }
    if (max_blocking_ns > 0 && !w->reported && held >= max_blocking_ns) {
        w->reported = true;
        report(h, g, held, w->switches, state);
        w->cpu_at = 0;      /* the sample ran on that thread's CPU clock */
    } else if (max_blocking_ns == 0 && preempt_ns > 0 && !g->said_unpreemptible
               && held >= UNPREEMPTIBLE_WARN_NS && state == 'R' && !alone
               && !(coop_sched_is_away(h) && atomic_load(&h->adopter) != NULL) && others_wait_for(h, now)) {
        warn_unpreemptible(h, g, held, w->switches);
    }
}

/* One hub at one tick; whether it runs a program greenlet. */
static bool watch_hub(struct watch *w, struct coop_hub *h, int64_t now, int64_t tick)
{
    /* The counter read again after current: unchanged, current is still h's greenlet, so
     * alive (a greenlet is freed only once it has left its hub). */
    uint64_t switches = atomic_load(&h->switches);
    struct coop_greenlet *g = h->current;
    bool steady = atomic_load(&h->switches) == switches;
    if (w->hub != h || w->switches != switches || !steady) {
        if (w->hub == h && w->handed_off)
            coop_sched_returned(h);
        *w = (struct watch){ .hub = h, .switches = switches, .since = now };
        return g != h->hub_g;
    }
    if (g == NULL || g == h->hub_g)
        return false;
    watch_holder(w, g, now, tick);
    return true;
}

/* The monitor's own: a forked child's monitor starts afresh. */
static struct watch watched[COOP_MAX_HUBS];

static void *monitor(void *unused)
{
    (void)unused;
    coop_mark_runtime_thread();
    int64_t busy_tick = busy_tick_ns(), nap = busy_tick;
    for (;;) {
        struct timespec ts = { nap / 1000000000, nap % 1000000000 };
        coop_sys(SYS_nanosleep, &ts, NULL, 0);
        int64_t now = coop_now();
        bool busy = false;
        int n = coop_hub_total();
        if (!coop_sched_work_for_any())
            any_work_since = 0;
        else if (any_work_since == 0)
            any_work_since = now;
        for (int i = 0; i < n; i++) {
            struct coop_hub *h = coop_hub_at(i);
            atomic_store_explicit(&h->stamp, now, memory_order_relaxed);   /* coop_stamp */
            busy |= watch_hub(&watched[i], h, now, busy_tick);
        }
        coop_sched_balance_spares();
        nap = busy ? busy_tick : IDLE_TICK_NS;
        for (int i = 0; i < n; i++) {
            struct watch *w = &watched[i];
            if (w->retry_ns != 0 && w->next_ask - now < nap)
                nap = w->next_ask > now ? w->next_ask - now : 0;
        }
    }
    return NULL;
}

/* A new thread takes its creator's name and signal mask: the creating thread wears the
 * monitor's name for that moment, so that the monitor never shows under the program's, and
 * blocks every signal, so that the program's never land on the monitor. */
static int create_named_monitor(void)
{
    char own_name[16] = "";
    sigset_t old;
    coop_sys(SYS_prctl, PR_GET_NAME, own_name, 0);
    coop_sys(SYS_prctl, PR_SET_NAME, "coop-monitor", 0);
    coop_block_all_signals(&old);
    int err = coop_start_runtime_thread(monitor, NULL);
    coop_restore_signals(&old);
    coop_sys(SYS_prctl, PR_SET_NAME, own_name, 0);
    return err;
}

void coop_monitor_start(void)
{
    bool no = false;
    if (atomic_load(&start_failed) || !atomic_compare_exchange_strong(&running, &no, true))
        return;
    if (preempt_ns > 0)
        coop_preempt_prepare();
    if (create_named_monitor() != 0) {
        atomic_store(&running, false);
        atomic_store(&start_failed, true);
        coop_warn("cannot start the monitor thread: no handoff, no preemption and no blocking reports");
    }
}

void coop_monitor_init(int max_blocking_ms, int preempt_ms, int handoff_ms)
{
    max_blocking_ns = max_blocking_ms * 1000000LL;
    preempt_ns = preempt_ms * 1000000LL;
    handoff_ns = handoff_ms * 1000000LL;
    if (max_blocking_ms <= 0)
        return;
    struct sigaction sa = { .sa_sigaction = take_sample, .sa_flags = SA_SIGINFO | SA_RESTART };
    sigemptyset(&sa.sa_mask);
    coop_settings.os_sigaction(SAMPLE_SIGNAL, &sa, NULL);
    coop_add_interrupting_signal(SAMPLE_SIGNAL);
    coop_unwind_warm_up();
    coop_monitor_start();
}

/* A hub held by a computing greenlet is freed by preemption, or by a handoff where that is
 * refused; one blocked in the kernel by a handoff. */
bool coop_monitor_frees_held_hubs(void)
{
    return handoff_ns > 0 && preempt_ns > 0 && atomic_load_explicit(&running, memory_order_relaxed);
}

void coop_monitor_fork_child(void)
{
    atomic_store(&running, false);
    memset(watched, 0, sizeof watched);
    any_work_since = 0;
    for (struct task_file *f = task_files; f < task_files + TASK_FILES_MAX; f++)
        if (f->name[0] != '\0')
            forget_task_file(f);
}

static uint64_t other_runtime_signals;

void coop_add_runtime_signal(int sig) { other_runtime_signals |= 1ULL << (sig - 1); }

uint64_t coop_runtime_signals(void) { return 1ULL << (SAMPLE_SIGNAL - 1) | other_runtime_signals; }
