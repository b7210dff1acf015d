/*
 * The blocking monitor (gevent's monitor thread, Go's sysmon): one real thread, started
 * when the program creates its first thread, that watches each hub's switch counter.
 *
 * Handoff: a hub whose counter stands still for HANDOFF_AFTER_NS while its thread sleeps in
 * the kernel (state S or D in /proc/self/task/TID/stat) is stuck in a system call coop could
 * not make cooperative; its work is handed to another hub (sched.c), and given back when its
 * counter moves again. A hub that stands still on the CPU with greenlets queued gets a
 * sleeping hub woken to steal them, in case a wake was missed.
 *
 * Reports (COOP_MAX_BLOCKING_MS): a program greenlet that keeps its hub for longer (by
 * computing, or in such a system call while other greenlets wait) is reported once per
 * episode, with its stack sampled on its own thread (a signal makes the hub's thread
 * unwind itself), and with the handoff that happened meanwhile, if any.
 */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "internal.h"

#define SAMPLE_SIGNAL (SIGRTMAX - 3)
#define SAMPLE_FRAMES 24

#define TICK_NS 1000000               /* while a hub runs greenlets */
#define IDLE_TICK_NS 20000000         /* while every hub sleeps */
#define HANDOFF_AFTER_NS 2000000

static int64_t max_blocking_ns;
static bool running;

/* The sample, written by the handler on the hub's thread, read by the monitor. */
static struct { uintptr_t ip; char line[160]; } sample[SAMPLE_FRAMES];

static _Atomic int sample_frames = -1;

int coop_monitor_threads(void) { return running ? 1 : 0; }

static void take_sample(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)info;
    unw_cursor_t cursor;
    int n = 0;
    if (unw_init_local2(&cursor, context, UNW_INIT_SIGNAL_FRAME) == 0) {
        do {
            unw_word_t ip, offset;
            unw_get_reg(&cursor, UNW_REG_IP, &ip);
            char name[128];
            sample[n].ip = ip;
            if (unw_get_proc_name(&cursor, name, sizeof name, &offset) == 0)
                snprintf(sample[n].line, sizeof sample[n].line, "        at %s+0x%lx\n", name, (unsigned long)offset);
            else
                snprintf(sample[n].line, sizeof sample[n].line, "        at 0x%lx\n", (unsigned long)ip);
            n++;
        } while (n < SAMPLE_FRAMES && unw_step(&cursor) > 0);
    }
    atomic_store(&sample_frames, n);
}

/* The state letter of an OS thread of this process (R running, S or D asleep in the
 * kernel), or 0. */
static char thread_state(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    int fd = (int)coop_sys(SYS_open, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    long len = coop_sys(SYS_read, fd, buf, sizeof buf - 1);
    coop_sys(SYS_close, fd, 0, 0);
    if (len <= 0)
        return 0;
    buf[len] = '\0';
    const char *end = strrchr(buf, ')');
    return end != NULL && end[1] == ' ' ? end[2] : 0;
}

static void report(struct coop_hub *h, struct coop_greenlet *g, int64_t held, char state)
{
    coop_log(COOP_LOG_ERROR, "greenlet #%lu \"%s\" has kept its hub for %.0f ms without yielding (COOP_MAX_BLOCKING_MS=%.0f)",
             (unsigned long)g->id, g->name, (double)held / 1e6, (double)max_blocking_ns / 1e6);
    if (coop_sched_is_away(h))
        coop_log(COOP_LOG_ERROR, "it is blocked in a system call (thread state %c): hub %d's other greenlets, "
                 "fds and timers were handed to another hub after %.0f ms",
                 state, h->index, (double)HANDOFF_AFTER_NS / 1e6);
    atomic_store(&sample_frames, -1);
    coop_sys(SYS_tgkill, getpid(), h->tid, SAMPLE_SIGNAL);
    for (int i = 0; i < 200 && atomic_load(&sample_frames) < 0; i++) {
        struct timespec ms = { 0, 1000000 };
        coop_sys(SYS_nanosleep, &ms, NULL, 0);
    }
    int n = atomic_load(&sample_frames);
    for (int i = 0; i < n; i++)
        if (!coop_in_runtime(sample[i].ip))
            coop_write_stderr(sample[i].line, strlen(sample[i].line));
}

struct watch { struct coop_hub *hub; uint64_t switches; int64_t since; bool reported, handed_off; };

/* One hub at one tick; whether it runs a program greenlet. */
static bool watch_hub(struct watch *w, struct coop_hub *h, int64_t now)
{
    /* The counter read again after current: unchanged, current is still h's greenlet, so
     * alive (a greenlet is freed only once it has left its hub). */
    uint64_t switches = atomic_load(&h->switches);
    struct coop_greenlet *g = h->current;
    bool steady = atomic_load(&h->switches) == switches;
    if (w->hub != h || w->switches != switches || !steady) {
        if (w->hub == h && w->handed_off)
            coop_sched_returned(h);
        *w = (struct watch){ h, switches, now, false, false };
        return g != h->hub_g;
    }
    if (g == NULL || g == h->hub_g)
        return false;
    int64_t held = now - w->since;
    if (held < HANDOFF_AFTER_NS)
        return true;
    /* Alone, a greenlet asleep in a real system call keeps nobody waiting. */
    bool alone = coop_alone();
    char state = thread_state(h->tid);
    bool asleep = state == 'S' || state == 'D';
    if (asleep && !alone && !w->handed_off) {
        w->handed_off = true;
        coop_info("hub %d: greenlet #%lu \"%s\" blocked in a system call for %.0f ms: its work goes to another hub",
                  h->index, (unsigned long)g->id, g->name, (double)held / 1e6);
        coop_sched_hand_off(h, AWAY_BLOCKED);
    } else if (state == 'R') {
        coop_sched_nudge(h);
    }
    if (max_blocking_ns > 0 && !w->reported && held >= max_blocking_ns && !(alone && asleep)) {
        w->reported = true;
        report(h, g, held, state);
    }
    return true;
}

static void *monitor(void *unused)
{
    (void)unused;
    coop_mark_runtime_thread();
    static struct watch watched[COOP_MAX_HUBS];
    int64_t tick = TICK_NS;
    for (;;) {
        struct timespec ts = { tick / 1000000000, tick % 1000000000 };
        coop_sys(SYS_nanosleep, &ts, NULL, 0);
        int64_t now = coop_now();
        bool busy = false;
        int n = coop_hub_total();
        for (int i = 0; i < n; i++)
            busy |= watch_hub(&watched[i], coop_hub_at(i), now);
        coop_sched_balance_spares();
        tick = busy ? TICK_NS : IDLE_TICK_NS;
    }
    return NULL;
}

/* The monitor starts with the scheduler (coop_sched_start); COOP_MAX_BLOCKING_MS adds
 * its reports. */
void coop_monitor_start(void)
{
    max_blocking_ns = coop_settings.max_blocking_ms * 1000000LL;
    if (max_blocking_ns > 0) {
        struct sigaction sa = { .sa_sigaction = take_sample, .sa_flags = SA_SIGINFO | SA_RESTART };
        sigemptyset(&sa.sa_mask);
        coop_settings.os_sigaction(SAMPLE_SIGNAL, &sa, NULL);
        /* libunwind takes locks and reads ELF files on first use: do that here, not in a handler. */
        unw_context_t uc;
        unw_cursor_t cursor;
        unw_getcontext(&uc);
        unw_init_local(&cursor, &uc);
        unw_step(&cursor);
    }
    /* Its thread takes no signal meant for the program. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    running = coop_settings.os_thread_create(&t, &attr, monitor, NULL) == 0;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void coop_monitor_fork_child(void) { running = false; }
