/*
 * The blocking monitor (gevent's monitor thread): one real thread that watches each hub's
 * switch counter. A program greenlet that keeps its hub for longer than
 * COOP_MAX_BLOCKING_MS (by computing, or in a system call coop could not make
 * cooperative while other greenlets wait) is reported once per episode, with its stack
 * sampled on its own thread: a signal makes the hub's thread unwind itself.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "unwind.h"

#define SAMPLE_SIGNAL (SIGRTMAX - 3)
#define SAMPLE_FRAMES 24

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
    const struct coop_unwind *unw = coop_unwind(false);   /* loaded by coop_monitor_start */
    unw_cursor_t cursor;
    int n = 0;
    if (unw != NULL && unw->init_local2(&cursor, context, UNW_INIT_SIGNAL_FRAME) == 0) {
        do {
            unw_word_t ip, offset;
            unw->get_reg(&cursor, UNW_REG_IP, &ip);
            char name[128];
            sample[n].ip = ip;
            if (unw->get_proc_name(&cursor, name, sizeof name, &offset) == 0)
                snprintf(sample[n].line, sizeof sample[n].line, "        at %s+0x%lx\n", name, (unsigned long)offset);
            else
                snprintf(sample[n].line, sizeof sample[n].line, "        at 0x%lx\n", (unsigned long)ip);
            n++;
        } while (n < SAMPLE_FRAMES && unw->step(&cursor) > 0);
    }
    atomic_store(&sample_frames, n);
}

/* Whether the thread is on a CPU, rather than asleep in a system call. */
static bool thread_running(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *end = strrchr(buf, ')');
    return end != NULL && end[1] == ' ' && end[2] == 'R';
}

static void report(struct coop_hub *h, struct coop_greenlet *g, int64_t held)
{
    coop_log(COOP_LOG_ERROR, "greenlet #%lu \"%s\" has kept its hub for %.0f ms without yielding (COOP_MAX_BLOCKING_MS=%.0f)",
             (unsigned long)g->id, g->name, (double)held / 1e6, (double)max_blocking_ns / 1e6);
    if (coop_trace_enabled())
        coop_trace_instant(g, COOP_TRACE_BLOCKING, (uint64_t)held);
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

struct watch { struct coop_hub *hub; uint64_t switches; int64_t since; bool reported; };

static void *monitor(void *unused)
{
    (void)unused;
    coop_mark_runtime_thread();
    enum { WATCHED = 64 };
    struct watch watched[WATCHED] = { { 0 } };
    int64_t tick = max_blocking_ns / 4 > 1000000 ? max_blocking_ns / 4 : 1000000;
    for (;;) {
        struct timespec ts = { tick / 1000000000, tick % 1000000000 };
        coop_sys(SYS_nanosleep, &ts, NULL, 0);
        int64_t now = coop_now();
        coop_lock(&coop_hubs_lock);
        struct coop_hub *h = coop_hubs;
        for (int i = 0; i < WATCHED && h != NULL; i++, h = h->next_hub) {
            struct watch *w = &watched[i];
            uint64_t switches = atomic_load(&h->switches);
            struct coop_greenlet *g = h->current;
            if (w->hub != h || w->switches != switches) {
                *w = (struct watch){ h, switches, now, false };
                continue;
            }
            /* Alone, a greenlet asleep in a real system call keeps nobody waiting. */
            if (w->reported || g->is_hub || now - w->since < max_blocking_ns
                || (coop_alone() && !thread_running(h->tid)))
                continue;
            w->reported = true;
            report(h, g, now - w->since);
        }
        coop_unlock(&coop_hubs_lock);
    }
    return NULL;
}

void coop_monitor_start(int max_blocking_ms)
{
    if (max_blocking_ms <= 0)
        return;
    max_blocking_ns = max_blocking_ms * 1000000LL;
    struct sigaction sa = { .sa_sigaction = take_sample, .sa_flags = SA_SIGINFO | SA_RESTART };
    sigemptyset(&sa.sa_mask);
    coop_settings.os_sigaction(SAMPLE_SIGNAL, &sa, NULL);
    coop_unwind_warm_up();
    pthread_t t;
    sigset_t old;
    coop_block_all_signals(&old);     /* inherited: the program's signals never land here */
    running = coop_settings.os_thread_create(&t, NULL, monitor, NULL) == 0;
    coop_restore_signals(&old);
}

static uint64_t other_runtime_signals;

void coop_add_runtime_signal(int sig) { other_runtime_signals |= 1ULL << (sig - 1); }

uint64_t coop_runtime_signals(void) { return 1ULL << (SAMPLE_SIGNAL - 1) | other_runtime_signals; }
