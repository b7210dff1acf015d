/*
 * COOP_* settings. A bad value stops the program before main with one line naming the
 * variable and the value: running half-configured would be worse than not running.
 * Parsing is a pure function of a getter (secure_getenv in a program; the fuzzer's data
 * in tests/fuzz) that reports the first bad setting instead of exiting.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shim.h"

const char *const shim_family_names[FAM_COUNT] = {
    "io", "net", "poll", "time", "thread", "dns", "file", "proc", "signal",
};

struct parser {
    const char *(*get)(const char *name);
    char *error;          /* the first bad setting, as one line */
    size_t error_size;
    bool failed;
};

static void fail(struct parser *p, const char *var, const char *value, const char *why)
{
    if (!p->failed)
        snprintf(p->error, p->error_size, "coop: %s=%s: %s", var, value, why);
    p->failed = true;
}

static int family_index(const char *name, size_t len)
{
    for (int i = 0; i < FAM_COUNT; i++)
        if (strlen(shim_family_names[i]) == len && strncmp(shim_family_names[i], name, len) == 0)
            return i;
    return -1;
}

/* A comma list read left to right: all, none, FAMILY, -FAMILY. A list that starts by
 * leaving a family out starts from all, as gevent's --no-X flags do. */
static void parse_patch(struct parser *p, const char *value, bool patched[FAM_COUNT])
{
    bool from_all = *value == '-';
    for (int i = 0; i < FAM_COUNT; i++)
        patched[i] = from_all;
    for (const char *item = value; *item != '\0';) {
        size_t len = strcspn(item, ",");
        bool remove = *item == '-';
        const char *name = item + remove;
        size_t name_len = len - remove;
        bool all = name_len == 3 && strncmp(name, "all", 3) == 0;
        bool none = name_len == 4 && strncmp(name, "none", 4) == 0;
        int i = family_index(name, name_len);
        if ((all || none) && !remove) {
            for (int f = 0; f < FAM_COUNT; f++)
                patched[f] = all;
        } else if (i >= 0) {
            patched[i] = !remove;
        } else {
            fail(p, "COOP_PATCH", value, "unknown family (known: all, none, io, net, poll, time, "
                                         "thread, dns, file, proc, signal; -FAMILY leaves one out)");
            return;
        }
        item += len;
        if (*item == ',')
            item++;
    }
}

/* 262144, 64k, 1m, 1g (either case), from min to max bytes; range names the range. */
static uint64_t parse_size(struct parser *p, const char *var, const char *value,
                           uint64_t min, uint64_t max, const char *range)
{
    char *end;
    unsigned long long n = strtoull(value, &end, 10), unit = 1;
    switch (*end) {
    case 'k': case 'K': unit = 1ULL << 10; end++; break;
    case 'm': case 'M': unit = 1ULL << 20; end++; break;
    case 'g': case 'G': unit = 1ULL << 30; end++; break;
    default: break;
    }
    if (end == value || *end != '\0' || value[0] == '-' || value[0] == '+' || value[0] == ' ')
        fail(p, var, value, "not a size (examples: 65536, 64k, 1m)");
    else if (n > max / unit || n * unit < min)
        fail(p, var, value, range);
    else
        return n * unit;
    return 0;
}

static bool parse_bool(struct parser *p, const char *var, const char *value)
{
    if (strcmp(value, "1") == 0 || strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0)
        return true;
    if (strcmp(value, "0") != 0 && strcasecmp(value, "no") != 0 && strcasecmp(value, "false") != 0
        && value[0] != '\0')
        fail(p, var, value, "expected 1 or 0");
    return false;
}

/* The index of value in a NULL-terminated list of choices. */
static int parse_choice(struct parser *p, const char *var, const char *value,
                        const char *const *choices, const char *help)
{
    for (int i = 0; choices[i] != NULL; i++)
        if (strcmp(value, choices[i]) == 0)
            return i;
    fail(p, var, value, help);
    return 0;
}

static long parse_number(struct parser *p, const char *var, const char *value, long min, long max)
{
    char *end;
    long n = strtol(value, &end, 10);
    if (end == value || *end != '\0' || value[0] == ' ' || value[0] == '+' || n < min || n > max) {
        char why[64];
        snprintf(why, sizeof why, "expected a whole number from %ld to %ld", min, max);
        fail(p, var, value, why);
        return min;
    }
    return n;
}

/* A signal number, or a name with or without SIG (USR1, SIGUSR2, RTMIN+3). */
static int parse_signal(struct parser *p, const char *var, const char *value)
{
    if (*value >= '0' && *value <= '9')
        return (int)parse_number(p, var, value, 1, NSIG - 1);
    const char *name = strncmp(value, "SIG", 3) == 0 ? value + 3 : value;
    for (int sig = 1; sig < NSIG; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev != NULL && strcmp(abbrev, name) == 0)
            return sig;
    }
    if (strncmp(name, "RTMIN+", 6) == 0 && name[6] >= '0' && name[6] <= '9')
        return SIGRTMIN + (int)parse_number(p, var, name + 6, 0, SIGRTMAX - SIGRTMIN);
    fail(p, var, value, "not a signal (examples: USR1, SIGUSR2, 10)");
    return 0;
}

/* The timeline and the profile (core/trace.c, core/profile.c). A file name must not be
 * empty; the size limit is kept whole or not at all (0). */
static void parse_trace(struct parser *p, struct coop_settings *core)
{
    const char *v;
    if ((v = p->get("COOP_TRACE")) != NULL && *v == '\0')
        fail(p, "COOP_TRACE", v, "expected a file name");
    core->trace_file = v != NULL && *v != '\0' ? v : NULL;
    core->trace_max = 64ULL << 20;
    if ((v = p->get("COOP_TRACE_MAX")) != NULL)
        core->trace_max = strcmp(v, "0") == 0 ? 0
            : parse_size(p, "COOP_TRACE_MAX", v, 64 << 10, 1ULL << 40, "size out of range (0 for no limit, or 64k to 1024g)");
    if ((v = p->get("COOP_PROFILE")) != NULL && *v == '\0')
        fail(p, "COOP_PROFILE", v, "expected a file name");
    core->profile_file = v != NULL && *v != '\0' ? v : NULL;
    core->profile_hz = 99;       /* not a divisor of common timer rates: no lockstep */
    if ((v = p->get("COOP_PROFILE_HZ")) != NULL)
        core->profile_hz = (int)parse_number(p, "COOP_PROFILE_HZ", v, 1, 10000);
}

int shim_parse_settings(const char *(*get)(const char *name), struct shim_settings *out,
                        char *error, size_t error_size)
{
    static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
    static const char *const switches[] = { "fast", "ucontext", NULL };
    static const char *const deadlock_actions[] = { "exit", "wait", NULL };
    static const char *const tls_modes[] = { "auto", "fsgsbase", "syscall", NULL };
    struct parser p = { get, error, error_size, false };
    struct coop_settings *core = &out->core;
    const char *v;

    parse_patch(&p, (v = get("COOP_PATCH")) != NULL ? v : "all", out->patched);
    core->stack_size = (v = get("COOP_STACK_SIZE")) != NULL
        ? (size_t)parse_size(&p, "COOP_STACK_SIZE", v, 16 << 10, 1 << 30, "size out of range (16k to 1g)")
        : 256 * 1024;
    out->log_level = COOP_LOG_WARN;
    if ((v = get("COOP_LOG")) != NULL)
        out->log_level = (enum coop_log_level)parse_choice(&p, "COOP_LOG", v, levels,
                                                           "expected error, warn, info or debug");
    if ((v = get("COOP_SWITCH")) != NULL)
        core->switch_ucontext = parse_choice(&p, "COOP_SWITCH", v, switches, "expected fast or ucontext") == 1;
    if ((v = get("COOP_TLS")) != NULL)
        core->tls_mode = (enum coop_tls_mode)parse_choice(&p, "COOP_TLS", v, tls_modes,
                                                          "expected auto, fsgsbase or syscall");
    if ((v = get("COOP_STATS")) != NULL)
        core->stats = parse_bool(&p, "COOP_STATS", v);
    if ((v = get("COOP_VERBOSE")) != NULL)
        core->verbose = parse_bool(&p, "COOP_VERBOSE", v);
    if ((v = get("COOP_DUMP_SIGNAL")) != NULL)
        out->dump_signal = parse_signal(&p, "COOP_DUMP_SIGNAL", v);
    if ((v = get("COOP_MAX_BLOCKING_MS")) != NULL)
        core->max_blocking_ms = (int)parse_number(&p, "COOP_MAX_BLOCKING_MS", v, 0, 3600000);
    core->preempt_ms = 10;          /* Go's time slice: see core/preempt.c */
    if ((v = get("COOP_PREEMPT_MS")) != NULL)
        core->preempt_ms = (int)parse_number(&p, "COOP_PREEMPT_MS", v, 0, 3600000);
    core->handoff_ms = 2;
    if ((v = get("COOP_HANDOFF_MS")) != NULL)
        core->handoff_ms = (int)parse_number(&p, "COOP_HANDOFF_MS", v, 0, 3600000);
    core->max_spares = COOP_SPARE_SLOTS;
    if ((v = get("COOP_MAX_SPARES")) != NULL)
        core->max_spares = (int)parse_number(&p, "COOP_MAX_SPARES", v, 0, COOP_SPARE_SLOTS);
    if ((v = get("COOP_ON_DEADLOCK")) != NULL)
        core->on_deadlock_exit =
            parse_choice(&p, "COOP_ON_DEADLOCK", v, deadlock_actions, "expected exit or wait") == 0;
    if ((v = get("COOP_HUBS")) != NULL && strcmp(v, "auto") != 0)
        core->hubs = (int)parse_number(&p, "COOP_HUBS", v, 1, COOP_MAX_REGULAR_HUBS);
    out->threadpool_size = 10;      /* gevent's default; libuv allows up to 1024 */
    if ((v = get("COOP_THREADPOOL_SIZE")) != NULL)
        out->threadpool_size = (int)parse_number(&p, "COOP_THREADPOOL_SIZE", v, 1, 1024);
    if ((v = get("COOP_FILE_OFFLOAD")) != NULL)
        out->file_offload = parse_bool(&p, "COOP_FILE_OFFLOAD", v);
    if ((v = get("COOP_NO_INHERIT")) != NULL)
        out->no_inherit = parse_bool(&p, "COOP_NO_INHERIT", v);
    if ((v = get("COOP_ALWAYS_COOPERATIVE")) != NULL)
        out->always_cooperative = parse_bool(&p, "COOP_ALWAYS_COOPERATIVE", v);
    parse_trace(&p, core);
    return p.failed ? -1 : 0;
}
