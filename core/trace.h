/* The timeline (trace.c) and the profiler (profile.c): what the rest of the core calls. */
#ifndef COOP_TRACE_H
#define COOP_TRACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct coop_hub;
struct coop_greenlet;

/* Whether records are being taken: one relaxed load, so the hooks cost a predicted branch
 * when tracing is off. Set at start, cleared by the last write and in a forked child. */
extern _Atomic bool coop_tracing;
static inline bool coop_trace_enabled(void)
{
    return atomic_load_explicit(&coop_tracing, memory_order_relaxed);
}

/* The hooks. switch: on the hub's thread, before the context switch; wake: whoever won
 * the wait's generation; spawn and name: any thread. */
void coop_trace_switch(struct coop_hub *h, struct coop_greenlet *from, struct coop_greenlet *to);
void coop_trace_wake(struct coop_greenlet *g, int reason);
void coop_trace_spawn(const struct coop_greenlet *g, const struct coop_greenlet *creator);
void coop_trace_name(const struct coop_greenlet *g);

/* Instant events on a greenlet's track: the blocking monitor's reports (arg: how long it
 * held its hub, ns), preemptions (arg: 1 when taken at an interposed call, 0 in the
 * preemption signal's handler) and, for the work that adds them, handoffs (arg: free, shown
 * as is). From any thread, but not from a signal handler that may have interrupted coop's
 * own code (a record in progress): preemption's handler records only where the
 * interrupted stack has no frame of coop's (core/preempt.c). */
enum coop_trace_instant { COOP_TRACE_BLOCKING, COOP_TRACE_PREEMPTED, COOP_TRACE_HANDOFF };
void coop_trace_instant(const struct coop_greenlet *g, enum coop_trace_instant kind, uint64_t arg);

/* Start-up: per hub (its buffers), then once (the file, the writer thread, handlers). */
void coop_trace_hub_init(struct coop_hub *h);
void coop_trace_start(void);
/* Writes everything now and ends the timeline and the profile (before an _exit). */
void coop_trace_finish(void);
/* The writer thread: 1 while it runs, else 0 (deadlock detection counts OS threads). */
int coop_trace_threads(void);
/* FILE with %p replaced by the process id (malloc'd, or NULL). */
char *coop_trace_expand_path(const char *pattern);

/* profile.c, driven by trace.c's writer thread. */
struct coop_profile_hub;
void coop_profile_start(void);
struct coop_profile_hub *coop_profile_hub_new(int tid);
/* A hub's profile buffer, or NULL (async-signal-safe). */
struct coop_profile_hub *coop_trace_hub_profile(struct coop_hub *h);
/* Starts the sampling timer of every hub that has none yet. */
void coop_profile_arm_hubs(void);
/* Takes the samples so far; final: writes the file. */
void coop_profile_collect(bool final);
void coop_profile_fork_child(void);
/* The symbol of a code address, without offset: false if none is known. */
bool coop_symbolize(uintptr_t ip, char *buf, size_t len);

#endif
