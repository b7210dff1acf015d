/*
 * The profiler (COOP_PROFILE=FILE, COOP_PROFILE_HZ, default 99): where each greenlet
 * spends its CPU time, as collapsed stacks ("root;caller;callee count", the greenlet's name
 * at the root) that speedscope, flamegraph.pl and inferno read.
 *
 * Each hub's OS thread gets a POSIX timer on its own CPU-time clock, delivering
 * SAMPLE_SIGNAL to that thread alone: a thread asleep in epoll or a system call uses no
 * CPU and is not sampled, so the profile shows work, not waiting (the trace shows waits).
 * The handler, on the hub's thread, reads which greenlet is current and unwinds the
 * interrupted context with libunwind (warmed up at start, as the monitor does), into a
 * ring of the hub: the handler is its only producer, the writer thread (trace.c) its only
 * consumer, so head and tail are all they share and a full ring drops a sample. The
 * writer names the frames (libunwind reads the symbol tables, so static functions of the
 * program have names too) and counts identical stacks. The file is rewritten (aside, then
 * renamed over it) every REWRITE_NS and at the end, by exit or trace.c's terminating-signal
 * flush: a program that leaves by _exit or dies otherwise keeps all but the last second.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "trace.h"
#include "unwind.h"

/* Real-time signals of the runtime: the monitor's is SIGRTMAX - 3; others may follow. */
#define SAMPLE_SIGNAL (SIGRTMAX - 6)
#define MAX_FRAMES 64
#define SAMPLE_RING 256
#define REWRITE_NS 1000000000LL

struct sample {
    uint64_t id;
    uintptr_t fn;
    char name[16];
    bool is_hub, is_main;
    int frames;
    uintptr_t ips[MAX_FRAMES];
};

struct coop_profile_hub {
    _Atomic uint64_t head;            /* the handler's, on the hub's thread */
    _Atomic uint64_t tail;            /* the writer's */
    int tid;
    bool armed;                       /* the writer's */
    struct sample samples[SAMPLE_RING];
};

static bool profiling;
static char *path;
static uint64_t counted;          /* samples counted so far */

/* --- on the hub's thread, in the signal handler --- */

static void take_sample(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)info;
    int saved_errno = errno;
    struct coop_hub *h = coop_thread.hub;
    struct coop_profile_hub *p = h != NULL ? coop_trace_hub_profile(h) : NULL;
    uint64_t head = p != NULL ? atomic_load_explicit(&p->head, memory_order_relaxed) : 0;
    if (p != NULL && head - atomic_load_explicit(&p->tail, memory_order_acquire) < SAMPLE_RING) {
        struct sample *s = &p->samples[head % SAMPLE_RING];
        struct coop_greenlet *g = h->current;
        s->id = g->id;
        s->fn = (uintptr_t)g->fn;
        memcpy(s->name, g->name, sizeof s->name);
        s->is_hub = g->is_hub;
        s->is_main = g->is_main;
        s->frames = 0;
        const struct coop_unwind *unw = coop_unwind(false);   /* loaded by coop_profile_start */
        unw_cursor_t cursor;
        struct coop_unwind_window window = coop_unwind_begin();
        if (unw != NULL && unw->init_local2(&cursor, context, UNW_INIT_SIGNAL_FRAME) == 0) {
            do {
                unw_word_t ip;
                unw->get_reg(&cursor, UNW_REG_IP, &ip);
                s->ips[s->frames++] = ip;
            } while (s->frames < MAX_FRAMES && unw->step(&cursor) > 0);
        }
        coop_unwind_end(window);
        atomic_store_explicit(&p->head, head + 1, memory_order_release);
    }
    errno = saved_errno;
}

/* --- the writer's side --- */

bool coop_symbolize(uintptr_t ip, char *buf, size_t len)
{
    if (coop_unwind_symbol(ip, buf, len, NULL))
        return true;
    Dl_info info;
    if (dladdr((void *)ip, &info) && info.dli_sname != NULL) {
        snprintf(buf, len, "%s", info.dli_sname);
        return true;
    }
    return false;
}

/* A string table: frame names by address, and counts by stack. */
struct entry { char *key; uintptr_t ip; uint64_t count; };
struct table { struct entry *e; size_t cap, used; };
static struct table names, stacks;

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The slot of key (stacks) or ip (names); grows the table first. NULL out of memory. */
static struct entry *slot(struct table *t, const char *key, uintptr_t ip)
{
    if (t->used * 2 >= t->cap) {
        struct table bigger = { calloc(t->cap ? t->cap * 2 : 1024, sizeof(struct entry)), t->cap ? t->cap * 2 : 1024, 0 };
        if (bigger.e == NULL)
            return NULL;
        for (size_t i = 0; i < t->cap; i++)
            if (t->e[i].key != NULL)
                *slot(&bigger, t->e[i].key, t->e[i].ip) = t->e[i], bigger.used++;
        free(t->e);
        *t = bigger;
    }
    size_t i = (key != NULL ? hash_text(key) : ip * 0x9e3779b97f4a7c15ULL) % t->cap;
    while (t->e[i].key != NULL && (key != NULL ? strcmp(t->e[i].key, key) != 0 : t->e[i].ip != ip))
        i = (i + 1) % t->cap;
    return &t->e[i];
}

/* A frame's name, without the separators of the format (';' and the last space). */
static const char *frame_name(uintptr_t ip, bool innermost)
{
    struct entry *e = slot(&names, NULL, ip);
    if (e == NULL)
        return "?";
    if (e->key != NULL)
        return e->key;
    char name[256];
    /* A return address may be the first byte of the next function: look up the call. */
    if (!coop_symbolize(innermost ? ip : ip - 1, name, sizeof name)) {
        Dl_info info;
        const char *module = dladdr((void *)ip, &info) && info.dli_fname ? strrchr(info.dli_fname, '/') : NULL;
        snprintf(name, sizeof name, "[%s+0x%lx]", module ? module + 1 : "?",
                 (unsigned long)(ip - (module ? (uintptr_t)info.dli_fbase : 0)));
    }
    for (char *c = name; *c != '\0'; c++)
        if (*c == ';' || *c == ' ')
            *c = *c == ';' ? ':' : '_';
    e->key = strdup(name);
    e->ip = ip;
    names.used++;
    return e->key != NULL ? e->key : "?";
}

static void count_sample(const struct sample *s)
{
    char line[8192];
    size_t len;
    char root[64];
    if (s->name[0] != '\0')
        snprintf(root, sizeof root, "%.16s", s->name);
    else if (s->is_hub || s->is_main)
        snprintf(root, sizeof root, "%s", s->is_hub ? "(hub)" : "main");
    else if (s->fn == 0 || !coop_symbolize(s->fn, root, sizeof root))
        snprintf(root, sizeof root, "greenlet %lu", (unsigned long)s->id);
    for (char *c = root; *c != '\0'; c++)
        if (*c == ';' || *c == ' ')
            *c = '_';
    len = (size_t)snprintf(line, sizeof line, "%s", root);
    /* Outermost first; a greenlet's own entry frames are the runtime's, left out. */
    int outer = s->frames - 1;
    while (!s->is_hub && outer > 0 && coop_in_runtime(s->ips[outer]))
        outer--;
    for (int i = outer; i >= 0 && len < sizeof line - 260; i--)
        len += (size_t)snprintf(line + len, sizeof line - len, ";%s", frame_name(s->ips[i], i == 0));
    struct entry *e = slot(&stacks, line, 0);
    if (e == NULL)
        return;
    if (e->key == NULL) {
        if ((e->key = strdup(line)) == NULL)
            return;
        stacks.used++;
    }
    e->count++;
    counted++;
}

static void drain(struct coop_profile_hub *p)
{
    uint64_t head = atomic_load_explicit(&p->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&p->tail, memory_order_relaxed);
    for (; tail != head; tail++)
        count_sample(&p->samples[tail % SAMPLE_RING]);
    atomic_store_explicit(&p->tail, tail, memory_order_release);
}

static void write_file(void)
{
    char *tmp = malloc(strlen(path) + 8);
    if (tmp == NULL)
        return;
    sprintf(tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (f == NULL) {
        coop_warn("COOP_PROFILE: cannot open %s: %s", tmp, strerror(errno));
        free(tmp);
        return;
    }
    for (size_t i = 0; i < stacks.cap; i++)
        if (stacks.e[i].key != NULL)
            fprintf(f, "%s %lu\n", stacks.e[i].key, (unsigned long)stacks.e[i].count);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        coop_warn("COOP_PROFILE: cannot write %s: %s", path, strerror(errno));
    free(tmp);
}

/* --- start-up and the hubs' timers --- */

struct coop_profile_hub *coop_profile_hub_new(int tid)
{
    struct coop_profile_hub *p = calloc(1, sizeof *p);
    if (p == NULL)
        coop_panic("out of memory for a hub's profile buffer");
    p->tid = tid;
    return p;
}

void coop_profile_start(void)
{
    path = coop_trace_expand_path(coop_settings.profile_file);
    if (path == NULL)
        return;
    struct sigaction sa = { .sa_sigaction = take_sample, .sa_flags = SA_SIGINFO | SA_RESTART };
    sigemptyset(&sa.sa_mask);
    coop_settings.os_sigaction(SAMPLE_SIGNAL, &sa, NULL);
    coop_add_runtime_signal(SAMPLE_SIGNAL);       /* never blocked on a hub */
    coop_add_interrupting_signal(SAMPLE_SIGNAL);  /* but while a greenlet with a signal stack runs */
    coop_unwind_warm_up();
    profiling = true;
}

/* A thread's CPU-time clock, as glibc's pthread_getcpuclockid makes it. */
static clockid_t thread_cpu_clock(int tid) { return (clockid_t)((~(unsigned)tid << 3) | 6); }

static void arm(struct coop_profile_hub *p)
{
    struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SAMPLE_SIGNAL };
    sev._sigev_un._tid = p->tid;
    int timer;
    long period = 1000000000L / coop_settings.profile_hz;
    struct itimerspec its = { { 0, period }, { 0, period } };
    p->armed = true;
    if (coop_sys(SYS_timer_create, thread_cpu_clock(p->tid), &sev, &timer) == 0)
        coop_sys(SYS_timer_settime, timer, 0, &its);   /* gone with its thread */
}

void coop_profile_arm_hubs(void)
{
    if (!profiling)
        return;
    coop_lock(&coop_trace_lock);
    for (struct coop_hub *h = coop_hub_at(0); h != NULL; h = coop_hub_next(h)) {
        struct coop_profile_hub *p = coop_trace_hub_profile(h);
        if (p != NULL && !p->armed)
            arm(p);
    }
    coop_unlock(&coop_trace_lock);
}

void coop_profile_collect(bool final)
{
    if (!profiling)
        return;
    coop_lock(&coop_trace_lock);
    for (struct coop_hub *h = coop_hub_at(0); h != NULL; h = coop_hub_next(h)) {
        struct coop_profile_hub *p = coop_trace_hub_profile(h);
        if (p != NULL)
            drain(p);
    }
    coop_unlock(&coop_trace_lock);
    static int64_t written;
    static uint64_t counted_then;
    int64_t now = coop_now();
    if (final || (now - written >= REWRITE_NS && stacks.used != 0 && counted != counted_then)) {
        write_file();
        written = now;
        counted_then = counted;
    }
    if (final)
        profiling = false;
}

void coop_profile_fork_child(void) { profiling = false; }
