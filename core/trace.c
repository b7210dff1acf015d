/*
 * The timeline (COOP_TRACE=FILE): when each greenlet ran, what it waited for, how long it
 * stayed ready, and who woke it, written in the Chrome Trace Event JSON format that
 * Perfetto, chrome://tracing and speedscope open.
 *
 * Recording. The hot path stores binary records and formats nothing: a switch, a wake, a
 * spawn and a name each append one fixed-size record (a timestamp and a few words) to a
 * ring of the hub that runs them. A hub's ring has one producer, its own OS thread, and
 * one consumer, the writer: head and tail are the only words they share, and a full ring
 * drops the record and counts it rather than wait. (A signal handler on the hub's thread
 * that wakes a greenlet, by sem_post, finds the producer busy and drops its record.)
 * Threads without a hub (coop's monitor, libuv's workers waking a greenlet, threads left
 * unpatched) share one more ring, taken with a try-lock so that no caller ever blocks.
 * Records carry greenlet ids, never pointers to greenlets, so a greenlet may move to
 * another hub (M:N) and may be gone when its records are read; its next records simply
 * come from the other hub's ring. Every track is the process's (one pid): a greenlet keeps
 * its one track whichever hub runs it, and each hub's own greenlet has a track "hub".
 *
 * Writing. One runtime thread, the writer, drains every ring each WRITE_INTERVAL_NS,
 * orders the records by time (records of one hub are in order already; those of several
 * are merged, and the newest WATERMARK_NS are kept for the next round so that a record
 * stamped just before a drain but published just after it still lands in order), turns
 * them into events with a little state per greenlet (running, waiting since, ready
 * since) and appends them to the file. The same thread drives the profiler (profile.c).
 *
 * What is on disk is always a whole JSON document: each append is one pwrite of the new
 * events followed by the closing footer, so the footer of the previous append is
 * overwritten by the same system call that writes the next one. A program that ends by
 * a signal, or even SIGKILL, leaves a valid file that lacks at most the last interval.
 * SIGTERM and SIGINT, when the program keeps their default action, are caught by coop:
 * the handler only wakes the writer and waits (futexes: async-signal-safe) until it has
 * flushed, then dies of the signal as before. exit() flushes from an atexit handler, a
 * deadlock's _exit(3) just before. Only a flush closes what is still open (a wait under
 * way): its slice ends at the flush, marked "end of trace".
 *
 * Who touches what: the rings as above; coop_tracing is set once at start and cleared by
 * the final flush (any thread reads it); everything in `w` belongs to whoever holds
 * w.lock, the writer thread or the thread that exits; a hub's trace pointer is published
 * under coop_trace_lock, which the writer holds while it walks the hubs.
 *
 * Size. COOP_TRACE_MAX (default 64 MiB) keeps the last events: the file is written in
 * segments of half that size; when the current segment is full, the file is rewritten
 * as header, that segment and footer into FILE.tmp and renamed over FILE (atomic: the
 * old or the new file, both valid), and a new segment starts. The file stays between
 * half the limit and the limit, and memory stays a few rings whatever the run's length.
 * Greenlet and hub names are metadata events; each segment repeats those of the tracks
 * it shows, so a segment never depends on the ones dropped before it.
 *
 * Several processes: a forked child stops tracing (its ring and the writer stayed in the
 * parent). A FILE containing %p is a pattern: %p becomes the process id, and programs it
 * executes trace to their own files; without %p, the file belongs to the process that
 * opened it first (the shim keeps its pid in COOP_TRACE_OWNER): kept across exec, as a
 * wrapper script execs the real program, and not given to children.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>

#include "internal.h"
#include "trace.h"

#define RING_RECORDS (1u << 16)              /* per hub: 3.5 MiB, 65,536 records */
#define WRITE_INTERVAL_NS (20 * 1000000LL)
#define WATERMARK_NS (5 * 1000000LL)
#define FLUSH_WAIT_NS (5 * 1000000000LL)     /* a terminating signal waits this long at most */
#define FOREIGN_SPINS 1000

#define END_OF_TRACE (-1)        /* the reason of a state still open at the end */

enum record_type { REC_SWITCH, REC_WAKE, REC_SPAWN, REC_NAME, REC_INSTANT };
enum record_flags { FROM_HUB = 1, TO_HUB = 2, FROM_MAIN = 4, TO_MAIN = 8, WAKER_HUB = 16, TIMED = 32 };

struct trace_record {
    int64_t ts;
    uint64_t id;          /* the greenlet the record is about */
    uint64_t other;       /* switch: the next greenlet; wake: the waker (0: no greenlet);
                           * spawn: the creator; instant: its argument */
    union {
        struct { const void *obj; const char *what; int32_t fd; int16_t nfds; int16_t events; } wait;
        char name[16];
        uintptr_t fn;
    } u;                  /* switch: the wait the first greenlet leaves for; name; spawn */
    uint8_t type, state, wait_kind, flags;
    int32_t reason;       /* wake: the wake reason; instant: its kind */
};

struct ring {
    bool producing;                         /* the producer's, against its own signal handlers */
    _Atomic uint64_t head;                  /* written by the producer only */
    _Atomic uint64_t tail;                  /* written by the writer only */
    _Atomic uint64_t dropped;               /* by the producer, read by the writer */
    struct trace_record records[RING_RECORDS];
};

/* Per hub (trace.h): the hub thread produces into ring, the writer consumes. */
struct coop_trace_hub {
    struct ring ring;
    pid_t pid;                              /* the hub's OS thread (the profiler's clock) */
    struct coop_profile_hub *profile;       /* profile.c's */
};

_Atomic bool coop_tracing;
static struct ring *foreign;                /* threads without a hub */
static coop_lock_t foreign_lock;

/* --- recording --- */

/* A slot, or NULL when the ring is full or the producer is in the middle of a record: a
 * signal handler on its thread may wake a greenlet (sem_post is async-signal-safe), and
 * would otherwise take the slot the interrupted record is being written to. */
static struct trace_record *ring_claim(struct ring *r)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (r->producing || head - atomic_load_explicit(&r->tail, memory_order_acquire) >= RING_RECORDS) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    r->producing = true;
    atomic_signal_fence(memory_order_seq_cst);
    return &r->records[head % RING_RECORDS];
}

static void ring_publish(struct ring *r)
{
    atomic_store_explicit(&r->head, atomic_load_explicit(&r->head, memory_order_relaxed) + 1,
                          memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    r->producing = false;
}

/* The calling thread's record slot, or NULL (then *locked tells whether to unlock). */
static struct trace_record *claim(struct ring **ring, bool *locked)
{
    struct coop_hub *h = coop_thread.hub;
    *locked = false;
    if (h != NULL && h->trace != NULL) {
        *ring = &h->trace->ring;
        return ring_claim(*ring);
    }
    if (foreign == NULL)
        return NULL;
    for (int i = 0; i < FOREIGN_SPINS; i++) {
        uint32_t free_state = 0;
        if (atomic_compare_exchange_weak(&foreign_lock.state, &free_state, 1)) {
            *locked = true;
            *ring = foreign;
            struct trace_record *rec = ring_claim(foreign);
            if (rec == NULL)
                coop_unlock(&foreign_lock);
            *locked = rec != NULL;
            return rec;     /* the lock keeps other threads out; producing, handlers */
        }
    }
    atomic_fetch_add_explicit(&foreign->dropped, 1, memory_order_relaxed);
    return NULL;
}

static void publish(struct ring *ring, bool locked)
{
    ring_publish(ring);
    if (locked)
        coop_unlock(&foreign_lock);
}

void coop_trace_switch(struct coop_hub *h, struct coop_greenlet *from, struct coop_greenlet *to)
{
    if (h->trace == NULL || !coop_trace_enabled())
        return;
    struct trace_record *rec = ring_claim(&h->trace->ring);
    if (rec == NULL)
        return;
    rec->ts = coop_now();
    rec->type = REC_SWITCH;
    rec->id = from->id;
    rec->other = to->id;
    rec->state = (uint8_t)from->state;
    rec->flags = (uint8_t)((from->is_hub ? FROM_HUB : 0) | (to->is_hub ? TO_HUB : 0)
                           | (from->is_main ? FROM_MAIN : 0) | (to->is_main ? TO_MAIN : 0)
                           | (__atomic_load_n(&from->timer_hub, __ATOMIC_RELAXED) != NULL ? TIMED : 0));
    if (from->state == G_WAITING) {
        const struct coop_wait_info *w = &from->waiting;
        rec->wait_kind = (uint8_t)w->kind;
        rec->u.wait.obj = w->kind == WAIT_JOIN ? (const void *)((const struct coop_greenlet *)w->obj)->id : w->obj;
        rec->u.wait.what = w->what;
        rec->u.wait.fd = w->fd;
        rec->u.wait.nfds = (int16_t)w->nfds;
        rec->u.wait.events = (int16_t)w->events;
    }
    ring_publish(&h->trace->ring);
}

/* Wakes, spawns, names and instants, from any thread: a record of type about g, or
 * nothing. flags: WAKER_HUB for a wake, else whether g is a hub or a main greenlet. */
static void record(enum record_type type, const struct coop_greenlet *g, uint64_t other,
                   int reason, int flags, const char *name, uintptr_t fn)
{
    if (!coop_trace_enabled())
        return;
    struct ring *ring;
    bool locked;
    struct trace_record *rec = claim(&ring, &locked);
    if (rec == NULL)
        return;
    rec->ts = coop_now();
    rec->type = (uint8_t)type;
    rec->id = g->id;
    rec->other = other;
    rec->reason = reason;
    rec->flags = (uint8_t)flags;
    if (name != NULL)
        strncpy(rec->u.name, name, sizeof rec->u.name);
    else
        rec->u.fn = fn;
    publish(ring, locked);
}

void coop_trace_wake(struct coop_greenlet *g, int reason)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *waker = h != NULL ? h->current : NULL;
    record(REC_WAKE, g, waker != NULL ? waker->id : 0, reason,
           waker != NULL && waker->is_hub ? WAKER_HUB : 0, NULL, 0);
}

static int kind_flags(const struct coop_greenlet *g) { return (g->is_hub ? FROM_HUB : 0) | (g->is_main ? FROM_MAIN : 0); }

void coop_trace_spawn(const struct coop_greenlet *g, const struct coop_greenlet *creator)
{
    record(REC_SPAWN, g, creator != NULL ? creator->id : 0, 0, kind_flags(g), NULL, (uintptr_t)g->fn);
}

void coop_trace_name(const struct coop_greenlet *g)
{
    record(REC_NAME, g, 0, 0, kind_flags(g), g->name, 0);
}

void coop_trace_instant(const struct coop_greenlet *g, enum coop_trace_instant kind, uint64_t arg)
{
    record(REC_INSTANT, g, arg, (int)kind, kind_flags(g), NULL, 0);
}

/* On the new hub's thread, which may already be in the table of hubs: h->trace is set
 * under coop_trace_lock, which the writer holds while it reads it. */
coop_lock_t coop_trace_lock;

void coop_trace_hub_init(struct coop_hub *h)
{
    if (coop_settings.trace_file == NULL && coop_settings.profile_file == NULL)
        return;
    struct coop_trace_hub *t = calloc(1, sizeof *t);
    if (t == NULL)
        coop_panic("out of memory for a hub's trace buffer");
    t->pid = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    if (coop_settings.profile_file != NULL)
        t->profile = coop_profile_hub_new(t->pid);
    coop_lock(&coop_trace_lock);
    h->trace = t;
    coop_unlock(&coop_trace_lock);
}

struct coop_profile_hub *coop_trace_hub_profile(struct coop_hub *h)
{
    return h->trace != NULL ? h->trace->profile : NULL;
}

/* --- the writer's view: a little state per greenlet --- */

enum view_state { V_UNKNOWN, V_RUNNING, V_WAITING, V_READY, V_IDLE };

struct view {
    uint64_t id;                  /* 0: a free slot */
    enum view_state state;
    int64_t since;
    struct trace_record wait;     /* the switch that started its wait */
    uint64_t flow;                /* a wake arrow to end when it runs, or 0 */
    uint64_t named_in_segment;
    char name[48];
    bool is_hub;
};

struct out { char *buf; size_t len, cap; };

static struct {
    coop_lock_t lock;             /* the writer's state below: the writer thread or an exit */
    char *path;
    bool writing;                 /* the file was made and can still be written */
    bool closed;
    int64_t start_ns;
    uint64_t max_bytes;
    uint64_t segment;             /* number of the current segment, from 1 */
    off_t segment_start, events_end;   /* in the file: the current segment, the footer */
    uint64_t next_flow;
    uint64_t dropped;
    pid_t pid;                    /* the process's, every track's group: read at each write */
    struct view *views;
    size_t views_cap, views_used;
    struct out out;
} w = { .closed = true };    /* until coop_trace_start */

/* The view of greenlet id, made if create. Only making one may grow the table, which
 * moves every view: callers holding one look it up again after making another. */
static struct view *view_find(uint64_t id, bool create)
{
    if (create && w.views_used * 2 >= w.views_cap) {
        size_t cap = w.views_cap ? w.views_cap * 2 : 1024;
        struct view *views = calloc(cap, sizeof *views);
        if (views == NULL)
            return NULL;
        for (size_t i = 0; i < w.views_cap; i++) {
            if (w.views[i].id == 0)
                continue;
            size_t j = w.views[i].id * 0x9e3779b97f4a7c15ULL % cap;
            while (views[j].id != 0)
                j = (j + 1) % cap;
            views[j] = w.views[i];
        }
        free(w.views);
        w.views = views;
        w.views_cap = cap;
    }
    if (w.views_cap == 0)
        return NULL;
    size_t i = id * 0x9e3779b97f4a7c15ULL % w.views_cap;
    while (w.views[i].id != 0 && w.views[i].id != id)
        i = (i + 1) % w.views_cap;
    if (w.views[i].id == 0) {
        if (!create)
            return NULL;
        w.views[i] = (struct view){ .id = id };
        w.views_used++;
    }
    return &w.views[i];
}

/* Linear probing: removal re-inserts the run that follows. */
static void view_remove(struct view *v)
{
    size_t i = (size_t)(v - w.views);
    w.views[i].id = 0;
    w.views_used--;
    for (size_t j = (i + 1) % w.views_cap; w.views[j].id != 0; j = (j + 1) % w.views_cap) {
        struct view moved = w.views[j];
        w.views[j].id = 0;
        w.views_used--;
        *view_find(moved.id, true) = moved;
    }
}

/* --- formatting, by hand: the writer must keep up with a busy server --- */

static void out_reserve(struct out *o, size_t more)
{
    if (o->len + more <= o->cap)
        return;
    size_t cap = o->cap ? o->cap : 1 << 20;
    while (cap < o->len + more)
        cap *= 2;
    char *buf = realloc(o->buf, cap);
    if (buf == NULL)
        coop_panic("out of memory for the trace writer");
    o->buf = buf;
    o->cap = cap;
}

static void out_str(struct out *o, const char *s)
{
    size_t n = strlen(s);
    out_reserve(o, n);
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void out_u64(struct out *o, uint64_t v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    out_reserve(o, (size_t)n);
    while (n > 0)
        o->buf[o->len++] = digits[--n];
}

/*
 * Times are microseconds, the format's unit, in steps of 1/128 us (7.8 ns): such numbers
 * are exact in binary floating point, so a slice's start plus its duration is exactly the
 * next slice's start in the viewer too. With decimal fractions it could come out a hair
 * later, and speedscope would take the next slice for a child of the previous one.
 */
#define TICKS_PER_US 128

static int64_t ticks(int64_t ns) { return ns <= w.start_ns ? 0 : ((ns - w.start_ns) * TICKS_PER_US + 500) / 1000; }

static void out_ticks(struct out *o, int64_t t)
{
    out_u64(o, (uint64_t)t / TICKS_PER_US);
    uint64_t frac = (uint64_t)t % TICKS_PER_US * (10000000 / TICKS_PER_US);   /* 7 decimals */
    if (frac == 0)
        return;
    char digits[9] = ".0000000";
    for (int i = 7; i > 0; i--, frac /= 10)
        digits[i] = (char)('0' + frac % 10);
    int len = 8;
    while (digits[len - 1] == '0')
        len--;
    digits[len] = '\0';
    out_str(o, digits);
}

static void out_hex(struct out *o, uintptr_t v)
{
    char text[24];
    snprintf(text, sizeof text, "0x%lx", (unsigned long)v);
    out_str(o, text);
}

static void out_json_string(struct out *o, const char *s)
{
    out_reserve(o, strlen(s) * 6 + 2);
    o->buf[o->len++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            o->buf[o->len++] = '\\';
            o->buf[o->len++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {   /* names are bytes, not necessarily UTF-8 */
            o->len += (size_t)sprintf(o->buf + o->len, "\\u%04x", c);
        } else {
            o->buf[o->len++] = (char)c;
        }
    }
    o->buf[o->len++] = '"';
}

/* The start of every event: {"ph":"X","pid":P,"tid":T,"ts":TS */
static void event_head(struct out *o, const char *ph, uint64_t tid, int64_t ts)
{
    out_str(o, "{\"ph\":\"");
    out_str(o, ph);
    out_str(o, "\",\"pid\":");
    out_u64(o, (uint64_t)w.pid);
    out_str(o, ",\"tid\":");
    out_u64(o, tid);
    out_str(o, ",\"ts\":");
    out_ticks(o, ticks(ts));
}

static void metadata(struct out *o, const char *what, uint64_t tid, const char *name, uint64_t sort)
{
    out_str(o, "{\"ph\":\"M\",\"pid\":");
    out_u64(o, (uint64_t)w.pid);
    out_str(o, ",\"tid\":");
    out_u64(o, tid);
    out_str(o, ",\"name\":\"");
    out_str(o, what);
    out_str(o, "\",\"args\":{");
    if (name != NULL) {
        out_str(o, "\"name\":");
        out_json_string(o, name);
    } else {
        out_str(o, "\"sort_index\":");
        out_u64(o, sort);
    }
    out_str(o, "}},\n");
}

/* A track's name: the thread's own, else its start function's symbol, else its number. */
static void name_by_function(struct view *v, uintptr_t fn)
{
    char symbol[sizeof v->name];
    if (fn != 0 && coop_symbolize(fn, symbol, sizeof symbol))
        snprintf(v->name, sizeof v->name, "%s", symbol);
}

static void track_metadata(struct out *o, struct view *v)
{
    if (v->named_in_segment == w.segment)
        return;
    v->named_in_segment = w.segment;
    if (v->name[0] == '\0')
        snprintf(v->name, sizeof v->name, "greenlet %lu", (unsigned long)v->id);
    metadata(o, "thread_name", v->id, v->name, 0);
    metadata(o, "thread_sort_index", v->id, NULL, v->id);
}

static struct view *view_of(struct out *o, uint64_t id, int flags_hub, int flags_main)
{
    struct view *v = view_find(id, true);
    if (v == NULL)
        return NULL;
    if (v->name[0] == '\0' && (flags_hub || flags_main))
        snprintf(v->name, sizeof v->name, "%s", flags_hub ? "hub" : "main");
    v->is_hub = v->is_hub || flags_hub;
    track_metadata(o, v);
    return v;
}

/* A slice's track is named in the segment that holds it (a slice may close long after the
 * track was last named, in an earlier segment). */
static void slice(struct out *o, struct view *v, int64_t from, int64_t to, const char *cat)
{
    track_metadata(o, v);
    event_head(o, "X", v->id, from);
    out_str(o, ",\"dur\":");
    out_ticks(o, ticks(to) - ticks(from));
    out_str(o, ",\"cat\":\"");
    out_str(o, cat);
    out_str(o, "\",\"name\":");
}

static const char *direction(int events)
{
    return events == (COOP_READ | COOP_WRITE) ? "read/write" : events & COOP_WRITE ? "write" : "read";
}

static const char *wake_reason(int reason)
{
    switch (reason) {
    case 0: return "woken";
    case ETIMEDOUT: return "timeout";
    case EBADF: return "fd closed";
    case EINTR: case COOP_RESTART: return "signal";
    case END_OF_TRACE: return "end of trace";
    default: return "other";
    }
}

/* The wait slice: its reason in the name, the details in args. */
static void wait_slice(struct out *o, struct view *v, int64_t end, int reason)
{
    const struct trace_record *r = &v->wait;
    char name[96];
    slice(o, v, v->since, end, "wait");
    switch ((enum coop_wait_kind)r->wait_kind) {
    case WAIT_FD:
        snprintf(name, sizeof name, "%s fd %d%s", direction(r->u.wait.events), r->u.wait.fd,
                 r->u.wait.nfds > 1 ? " (and more)" : "");
        out_json_string(o, name);
        out_str(o, ",\"args\":{\"fd\":");
        out_u64(o, (uint64_t)r->u.wait.fd);
        out_str(o, ",\"direction\":\"");
        out_str(o, direction(r->u.wait.events));
        out_str(o, "\",\"fds\":");
        out_u64(o, (uint64_t)r->u.wait.nfds);
        break;
    case WAIT_PARK:
        snprintf(name, sizeof name, "%s %p", r->u.wait.what ? r->u.wait.what : "object", r->u.wait.obj);
        out_json_string(o, name);
        out_str(o, ",\"args\":{\"object\":\"");
        out_hex(o, (uintptr_t)r->u.wait.obj);
        out_str(o, "\",\"kind\":");
        out_json_string(o, r->u.wait.what ? r->u.wait.what : "object");
        break;
    case WAIT_SLEEP:
        out_str(o, "\"sleep\",\"args\":{\"kind\":\"sleep\"");
        break;
    case WAIT_PREEMPTED:     /* requeued behind the hub's next poll (core/preempt.c) */
        out_str(o, "\"preempted\",\"args\":{\"kind\":\"preempted\"");
        break;
    case WAIT_JOIN:
        snprintf(name, sizeof name, "join greenlet %lu", (unsigned long)(uintptr_t)r->u.wait.obj);
        out_json_string(o, name);
        out_str(o, ",\"args\":{\"greenlet\":");
        out_u64(o, (uint64_t)(uintptr_t)r->u.wait.obj);
        break;
    case WAIT_OFFLOAD:
        out_str(o, "\"threadpool\",\"args\":{\"kind\":\"offload\"");
        break;
    }
    out_str(o, ",\"timed\":");
    out_str(o, r->flags & TIMED ? "true" : "false");
    out_str(o, ",\"end\":\"");
    out_str(o, wake_reason(reason));
    out_str(o, "\"}},\n");
}

static void flow(struct out *o, const char *ph, uint64_t tid, int64_t ts, uint64_t id)
{
    event_head(o, ph, tid, ts);
    out_str(o, ph[0] == 'f' ? ",\"bp\":\"e\",\"id\":" : ",\"id\":");
    out_u64(o, id);
    out_str(o, ",\"cat\":\"wake\",\"name\":\"wake\"},\n");
}

/* Leaves the state it was in: closes the slice that state makes, if any. */
static void end_state(struct out *o, struct view *v, int64_t ts, int reason)
{
    if (v->state == V_RUNNING) {
        /* A hub runs to poll, and blocks in its poll when nothing is ready. */
        slice(o, v, v->since, ts, v->is_hub ? "hub" : "run");
        out_str(o, v->is_hub ? "\"poll\"},\n" : "\"running\"},\n");
    } else if (v->state == V_WAITING) {
        wait_slice(o, v, ts, reason);
    } else if (v->state == V_READY && ts > v->since) {
        slice(o, v, v->since, ts, "ready");
        out_str(o, "\"ready\"},\n");
    }
    v->since = ts;
}

static void on_switch(struct out *o, const struct trace_record *r)
{
    struct view *to = view_of(o, r->other, r->flags & TO_HUB, r->flags & TO_MAIN);
    struct view *from = view_of(o, r->id, r->flags & FROM_HUB, r->flags & FROM_MAIN);
    if (to != NULL)
        to = view_find(r->other, false);    /* making the second may have moved it */
    if (from == NULL || to == NULL)
        return;
    if (from->state == V_UNKNOWN) {     /* it was running when tracing started */
        from->state = V_RUNNING;
        from->since = w.start_ns;
    }
    if (from->state == V_RUNNING) {
        end_state(o, from, r->ts, 0);
        from->since = r->ts;
        if (r->state == G_FINISHED) {
            view_remove(from);
            to = view_find(r->other, false);    /* removal may have moved it */
            if (to == NULL)
                return;
        } else if (r->state == G_WAITING) {
            from->state = V_WAITING;
            from->wait = *r;
        } else {
            from->state = from->is_hub ? V_IDLE : V_READY;
        }
    }
    end_state(o, to, r->ts, 0);
    if (to->flow != 0) {
        flow(o, "f", to->id, r->ts, to->flow);
        to->flow = 0;
    }
    to->state = V_RUNNING;
}

static void on_wake(struct out *o, const struct trace_record *r)
{
    struct view *v = view_find(r->id, false);
    if (v == NULL || v->state != V_WAITING)
        return;
    end_state(o, v, r->ts, r->reason);
    v->state = V_READY;
    struct view *waker = r->other != 0 && !(r->flags & WAKER_HUB) ? view_find(r->other, false) : NULL;
    if (waker != NULL && waker->state == V_RUNNING) {
        v->flow = ++w.next_flow;
        flow(o, "s", waker->id, r->ts, v->flow);
    }
}

static void on_spawn(struct out *o, const struct trace_record *r)
{
    struct view *v = view_find(r->id, true);
    if (v == NULL)
        return;
    v->state = V_READY;
    v->since = r->ts;
    name_by_function(v, r->u.fn);
    track_metadata(o, v);
    struct view *creator = r->other != 0 ? view_find(r->other, false) : NULL;
    if (creator != NULL && creator->state == V_RUNNING) {
        v->flow = ++w.next_flow;
        flow(o, "s", creator->id, r->ts, v->flow);
    }
}

static const char *const instant_names[] = {
    [COOP_TRACE_BLOCKING] = "kept its hub (blocking monitor)",
    [COOP_TRACE_PREEMPTED] = "preempted",
    [COOP_TRACE_HANDOFF] = "hub handed off",
};

static void on_instant(struct out *o, const struct trace_record *r)
{
    if (r->reason < 0 || r->reason > COOP_TRACE_HANDOFF)
        return;
    event_head(o, "i", r->id, r->ts);
    out_str(o, ",\"s\":\"t\",\"cat\":\"coop\",\"name\":\"");
    out_str(o, instant_names[r->reason]);
    out_str(o, r->reason == COOP_TRACE_BLOCKING ? "\",\"args\":{\"held_ms\":" : "\",\"args\":{\"arg\":");
    out_u64(o, r->reason == COOP_TRACE_BLOCKING ? r->other / 1000000 : r->other);
    out_str(o, "}},\n");
}

static void on_record(struct out *o, const struct trace_record *r)
{
    if (r->id == 0)             /* 0 marks a free slot of the table: no greenlet has it */
        return;
    switch ((enum record_type)r->type) {
    case REC_SWITCH: on_switch(o, r); break;
    case REC_WAKE: on_wake(o, r); break;
    case REC_SPAWN: on_spawn(o, r); break;
    case REC_NAME: {
        struct view *v = view_find(r->id, true);
        if (v != NULL) {
            snprintf(v->name, sizeof v->name, "%.16s", r->u.name);
            v->named_in_segment = 0;
            track_metadata(o, v);
        }
        break;
    }
    case REC_INSTANT: on_instant(o, r); break;
    }
}

/* --- draining the rings --- */

/* Records waiting to be written, in the order they were drained. */
struct pending { struct trace_record r; uint64_t seq; };
static struct pending *pend;
static size_t pend_len, pend_cap;
static uint64_t pend_seq;

static void pend_add(const struct trace_record *r)
{
    if (pend_len == pend_cap) {
        size_t cap = pend_cap ? pend_cap * 2 : 4096;
        struct pending *p = realloc(pend, cap * sizeof *p);
        if (p == NULL)
            return;
        pend = p;
        pend_cap = cap;
    }
    pend[pend_len++] = (struct pending){ *r, pend_seq++ };
}

static void drain(struct ring *r)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    for (; tail != head; tail++)
        pend_add(&r->records[tail % RING_RECORDS]);
    atomic_store_explicit(&r->tail, tail, memory_order_release);
    w.dropped += atomic_exchange_explicit(&r->dropped, 0, memory_order_relaxed);
}

static int by_time(const void *a, const void *b)
{
    const struct pending *x = a, *y = b;
    if (x->r.ts != y->r.ts)
        return x->r.ts < y->r.ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* --- the file --- */

static void write_all(int fd, const char *buf, size_t len, off_t at)
{
    static bool warned;
    while (len > 0) {
        long n = coop_sys6(SYS_pwrite64, fd, (long)buf, (long)len, at, 0, 0);
        if (n == -EINTR)
            continue;
        if (n <= 0) {
            if (!warned)
                coop_warn("COOP_TRACE: cannot write %s: %s", w.path, strerror((int)-n));
            warned = true;
            return;
        }
        buf += n;
        len -= (size_t)n;
        at += n;
    }
}

static void footer(struct out *o)
{
    out_str(o, "{\"ph\":\"M\",\"pid\":");
    out_u64(o, (uint64_t)getpid());
    out_str(o, ",\"tid\":0,\"name\":\"process_name\",\"args\":{\"name\":");
    out_json_string(o, program_invocation_short_name);
    out_str(o, "}}\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"coop_dropped_events\":");
    out_u64(o, w.dropped);
    out_str(o, ",\"coop_trace_max_bytes\":");
    out_u64(o, w.max_bytes);
    out_str(o, "}}\n");
}

static const char header[] = "{\"traceEvents\":[\n";

/*
 * The file is opened for each write and closed after it, never kept open: a program that
 * closes every descriptor (as daemons do) cannot take it away, nor reuse its number for a
 * file of its own that the writer would then write into. That costs an open and a close
 * per WRITE_INTERVAL_NS.
 */
static int open_file(const char *path, int flags)
{
    int fd = (int)coop_sys6(SYS_openat, AT_FDCWD, (long)path, flags | O_CLOEXEC, 0644, 0, 0);
    if (fd < 0)
        coop_warn("COOP_TRACE: cannot open %s: %s", path, strerror(-fd));
    return fd;
}

/* The current segment is full: FILE becomes header + that segment + footer (written
 * aside and renamed over it), and a new segment starts. */
static void rotate(void)
{
    size_t tmp_len = strlen(w.path) + 8;
    char *tmp = malloc(tmp_len);
    int rfd = (int)coop_sys6(SYS_openat, AT_FDCWD, (long)w.path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (tmp == NULL || rfd < 0) {
        free(tmp);
        return;
    }
    snprintf(tmp, tmp_len, "%s.tmp", w.path);
    int fd = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC);
    if (fd >= 0) {
        off_t at = (off_t)(sizeof header - 1);
        write_all(fd, header, at, 0);
        /* In the kernel: no copy through the writer's memory. */
        loff_t from = w.segment_start, to = at;
        while (from < w.events_end) {
            long n = coop_sys6(SYS_copy_file_range, rfd, (long)&from, fd, (long)&to,
                               (long)(w.events_end - from), 0);
            if (n <= 0)
                break;
        }
        at = (off_t)to;
        struct out end = { 0 };
        footer(&end);
        write_all(fd, end.buf, end.len, at);
        free(end.buf);
        /* A copy cut short would be a broken file: then FILE keeps growing instead. */
        coop_sys(SYS_close, fd, 0, 0);
        if (from == w.events_end && coop_sys(SYS_rename, tmp, w.path, 0) == 0) {
            w.segment_start = w.events_end = at;
            w.segment++;
        } else {
            coop_sys(SYS_unlinkat, AT_FDCWD, tmp, 0);
            coop_warn("COOP_TRACE: cannot rewrite %s to keep it within COOP_TRACE_MAX", w.path);
            w.max_bytes = 0;
        }
    }
    coop_sys(SYS_close, rfd, 0, 0);
    free(tmp);
}

/* Appends the events formatted so far, with the footer in the same write. */
static void append(struct out *o)
{
    size_t events = o->len;
    footer(o);
    int fd = open_file(w.path, O_WRONLY);
    if (fd < 0) {                 /* removed or moved away: the timeline ends here */
        w.writing = false;
        atomic_store(&coop_tracing, false);
    } else {
        write_all(fd, o->buf, o->len, w.events_end);
        coop_sys(SYS_close, fd, 0, 0);
        w.events_end += (off_t)events;
    }
    o->len = 0;
}

/* What is still open at the end (running, a wait, ready) ends there. */
static void end_all(struct out *o, int64_t now)
{
    for (size_t i = 0; i < w.views_cap; i++)
        if (w.views[i].id != 0 && w.views[i].state != V_IDLE)
            end_state(o, &w.views[i], now, END_OF_TRACE);
}

/* Turns the records older than until (all, when final) into events on disk, starting a
 * new segment whenever the current one reaches half the limit. */
static void write_events(int64_t until, bool final)
{
    struct out *o = &w.out;
    o->len = 0;
    w.pid = getpid();
    coop_lock(&coop_trace_lock);
    for (struct coop_hub *h = coop_hub_at(0); h != NULL; h = coop_hub_next(h))
        if (h->trace != NULL)
            drain(&h->trace->ring);
    coop_unlock(&coop_trace_lock);
    coop_lock(&foreign_lock);
    drain(foreign);
    coop_unlock(&foreign_lock);
    size_t sorted = 1;          /* one hub's records come in order: sort only a merge */
    while (sorted < pend_len && by_time(&pend[sorted - 1], &pend[sorted]) < 0)
        sorted++;
    if (sorted < pend_len)
        qsort(pend, pend_len, sizeof *pend, by_time);
    size_t done = 0;
    for (; done < pend_len && (final || pend[done].r.ts < until); done++) {
        on_record(o, &pend[done].r);
        if (w.max_bytes != 0 && (uint64_t)(w.events_end - w.segment_start) + o->len >= w.max_bytes / 2) {
            append(o);
            rotate();
        }
    }
    if (done > 0) {             /* pend is NULL until the first record: memmove wants a pointer */
        memmove(pend, pend + done, (pend_len - done) * sizeof *pend);
        pend_len -= done;
    }
    if (final)
        end_all(o, coop_now());
    append(o);
    if (o->cap > (4u << 20)) {      /* a burst grew it: give the memory back */
        free(o->buf);
        *o = (struct out){ 0 };
    }
}

/* --- the writer thread, exit and terminating signals --- */

static _Atomic uint32_t writer_bell;         /* rung to write now: a terminating signal */
static _Atomic uint32_t flushed;             /* set once the last write is done */
static bool writer_running;

static void write_round(bool final)
{
    coop_lock(&w.lock);
    if (!w.closed) {
        if (final)
            atomic_store(&coop_tracing, false);
        if (w.writing)
            write_events(coop_now() - WATERMARK_NS, final);
        coop_profile_collect(final);
        if (final)
            w.closed = true;
    }
    coop_unlock(&w.lock);
    if (final) {
        atomic_store(&flushed, 1);
        coop_futex(&flushed, FUTEX_WAKE, INT32_MAX, NULL);
    }
}

static void *writer_main(void *unused)
{
    (void)unused;
    coop_mark_runtime_thread();
    for (;;) {
        uint32_t bell = atomic_load(&writer_bell);
        struct timespec interval = { 0, WRITE_INTERVAL_NS };
        if (bell == 0)
            coop_futex(&writer_bell, FUTEX_WAIT, 0, &interval);
        bool final = atomic_load(&writer_bell) != 0;
        write_round(final);
        if (final)
            return NULL;
        coop_profile_arm_hubs();
    }
}

static void at_exit(void) { write_round(true); }

void coop_trace_finish(void) { write_round(true); }

static const int terminating[] = { SIGTERM, SIGINT };

/* The program keeps the default action: flush, then die of the signal as before. */
static void on_terminating_signal(int sig)
{
    if (writer_running) {
        atomic_store(&writer_bell, 1);
        coop_futex(&writer_bell, FUTEX_WAKE, 1, NULL);
        int64_t deadline = coop_now() + FLUSH_WAIT_NS;
        while (atomic_load(&flushed) == 0 && coop_now() < deadline) {
            struct timespec step = { 0, 10000000 };
            coop_futex(&flushed, FUTEX_WAIT, 0, &step);
        }
    }
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    coop_settings.os_sigaction(sig, &dfl, NULL);
    coop_sys(SYS_tgkill, getpid(), coop_sys(SYS_gettid, 0, 0, 0), sig);
}

bool coop_trace_is_handler(const void *handler) { return handler == (const void *)on_terminating_signal; }

int coop_trace_threads(void) { return writer_running ? 1 : 0; }

static void fork_child(void)
{
    atomic_store(&coop_tracing, false);
    w.closed = true;                 /* the file and the writer are the parent's */
    writer_running = false;
    coop_profile_fork_child();
}

/* FILE with the pid for each %p, made absolute: the writer opens it again and again, and
 * the program may change its working directory meanwhile. */
static char *expand_path(const char *pattern)
{
    char cwd[4096] = "";
    if (pattern[0] != '/' && getcwd(cwd, sizeof cwd) == NULL)
        return NULL;
    size_t marks = 0;
    for (const char *s = strstr(pattern, "%p"); s != NULL; s = strstr(s + 2, "%p"))
        marks++;
    size_t len = strlen(cwd) + 1 + strlen(pattern) + marks * 12 + 1;
    char *path = malloc(len), *p = path;
    if (path == NULL)
        return NULL;
    if (cwd[0] != '\0')
        p += sprintf(p, "%s/", cwd);
    for (const char *s = pattern; *s != '\0'; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            p += sprintf(p, "%d", (int)getpid());
            s++;
        } else {
            *p++ = *s;
        }
    }
    *p = '\0';
    return path;
}

char *coop_trace_expand_path(const char *pattern) { return expand_path(pattern); }

void coop_trace_start(void)
{
    bool trace = coop_settings.trace_file != NULL, profile = coop_settings.profile_file != NULL;
    if (!trace && !profile)
        return;
    w.closed = false;
    w.segment = 1;
    w.max_bytes = coop_settings.trace_max;
    w.start_ns = coop_now();
    int fd;
    if (trace && (foreign = calloc(1, sizeof *foreign)) != NULL
        && (w.path = expand_path(coop_settings.trace_file)) != NULL
        && (fd = open_file(w.path, O_WRONLY | O_CREAT | O_TRUNC)) >= 0) {
        write_all(fd, header, sizeof header - 1, 0);
        coop_sys(SYS_close, fd, 0, 0);
        w.segment_start = w.events_end = (off_t)(sizeof header - 1);
        w.writing = true;
        append(&w.out);     /* the footer alone: valid from the start, even after _exit */
        atomic_store(&coop_tracing, w.writing);
    }
    if (profile)
        coop_profile_start();
    pthread_atfork(NULL, NULL, fork_child);
    atexit(at_exit);

    sigset_t old;
    coop_block_all_signals(&old);     /* inherited: the writer takes no signal */
    writer_running = coop_start_runtime_thread(writer_main, NULL) == 0;
    coop_restore_signals(&old);
    for (size_t i = 0; writer_running && i < sizeof terminating / sizeof *terminating; i++) {
        struct sigaction current, sa = { .sa_handler = on_terminating_signal };
        sigemptyset(&sa.sa_mask);
        if (coop_settings.os_sigaction(terminating[i], NULL, &current) == 0 && current.sa_handler == SIG_DFL)
            coop_settings.os_sigaction(terminating[i], &sa, NULL);
    }
}
