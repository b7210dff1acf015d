/*
 * COOP_* settings. A bad value stops the program before main with one line naming the
 * variable and the value: running half-configured would be worse than not running.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "shim.h"

const char *const shim_family_names[FAM_COUNT] = {
    "io", "net", "poll", "time", "thread", "dns", "file", "proc", "signal",
};
bool shim_patched[FAM_COUNT];

static void bad_setting(const char *var, const char *value, const char *why)
{
    char line[512];
    int n = snprintf(line, sizeof line, "coop: %s=%s: %s\n", var, value, why);
    coop_write_stderr(line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    _exit(2);
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
static void parse_patch(const char *value)
{
    const char *p = value;
    bool on = *p != '-';
    for (int i = 0; i < FAM_COUNT; i++)
        shim_patched[i] = !on;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        bool remove = *p == '-';
        const char *name = p + remove;
        size_t name_len = len - remove;
        if (name_len == 3 && strncmp(name, "all", 3) == 0 && !remove) {
            for (int i = 0; i < FAM_COUNT; i++)
                shim_patched[i] = true;
        } else if (name_len == 4 && strncmp(name, "none", 4) == 0 && !remove) {
            for (int i = 0; i < FAM_COUNT; i++)
                shim_patched[i] = false;
        } else {
            int i = family_index(name, name_len);
            if (i < 0)
                bad_setting("COOP_PATCH", value,
                            "unknown family (known: all, none, io, net, poll, time, thread, dns, "
                            "file, proc, signal; -FAMILY leaves one out)");
            shim_patched[i] = !remove;
        }
        p += len;
        if (*p == ',')
            p++;
    }
}

/* 262144, 64k, 1m, 1g (either case). */
static size_t parse_size(const char *var, const char *value)
{
    char *end;
    unsigned long long n = strtoull(value, &end, 10);
    unsigned long long unit = 1;
    switch (*end) {
    case 'k': case 'K': unit = 1ULL << 10; end++; break;
    case 'm': case 'M': unit = 1ULL << 20; end++; break;
    case 'g': case 'G': unit = 1ULL << 30; end++; break;
    default: break;
    }
    if (end == value || *end != '\0' || value[0] == '-')
        bad_setting(var, value, "not a size (examples: 65536, 64k, 1m)");
    if (n * unit < 16 * 1024 || n * unit > (1ULL << 30))
        bad_setting(var, value, "size out of range (16k to 1g)");
    return (size_t)(n * unit);
}

static bool parse_bool(const char *var, const char *value)
{
    if (strcmp(value, "1") == 0 || strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0)
        return true;
    if (strcmp(value, "0") == 0 || strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0
        || value[0] == '\0')
        return false;
    bad_setting(var, value, "expected 1 or 0");
    return false;
}

/* Index of value in a NULL-terminated list of choices, or a fatal setting error. */
static int parse_choice(const char *var, const char *value, const char *const *choices, const char *help)
{
    for (int i = 0; choices[i] != NULL; i++)
        if (strcmp(value, choices[i]) == 0)
            return i;
    bad_setting(var, value, help);
    return 0;
}

static long parse_number(const char *var, const char *value, long min, long max)
{
    char *end;
    long n = strtol(value, &end, 10);
    if (end == value || *end != '\0' || n < min || n > max)
        bad_setting(var, value, "expected a whole number in range");
    return n;
}

/* A signal number, or a name with or without SIG (USR1, SIGUSR2, RTMIN+3). */
static int parse_signal(const char *var, const char *value)
{
    if (*value >= '0' && *value <= '9')
        return (int)parse_number(var, value, 1, NSIG - 1);
    const char *name = strncmp(value, "SIG", 3) == 0 ? value + 3 : value;
    for (int sig = 1; sig < NSIG; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev != NULL && strcmp(abbrev, name) == 0)
            return sig;
    }
    if (strncmp(name, "RTMIN+", 6) == 0)
        return SIGRTMIN + (int)parse_number(var, name + 6, 0, SIGRTMAX - SIGRTMIN);
    bad_setting(var, value, "not a signal (examples: USR1, SIGUSR2, 10)");
    return 0;
}

static void print_patched(void)

{
    char line[256];
    int n = snprintf(line, sizeof line, "coop: patched families:");
    for (int i = 0; i < FAM_COUNT; i++)
        if (shim_patched[i])
            n += snprintf(line + n, sizeof line - (size_t)n, " %s", shim_family_names[i]);
    line[n++] = '\n';
    coop_write_stderr(line, (size_t)n);
}

void shim_read_settings(struct coop_settings *core)
{
    static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
    static const char *const switches[] = { "fast", "ucontext", NULL };
    static const char *const deadlock_actions[] = { "exit", "wait", NULL };

    const char *v;

    parse_patch((v = secure_getenv("COOP_PATCH")) != NULL ? v : "all");
    core->stack_size = (v = secure_getenv("COOP_STACK_SIZE")) != NULL
                           ? parse_size("COOP_STACK_SIZE", v) : 256 * 1024;
    if ((v = secure_getenv("COOP_LOG")) != NULL)
        coop_log_level = (enum coop_log_level)parse_choice("COOP_LOG", v, levels,
                                                           "expected error, warn, info or debug");
    if ((v = secure_getenv("COOP_SWITCH")) != NULL)
        core->switch_ucontext = parse_choice("COOP_SWITCH", v, switches, "expected fast or ucontext") == 1;
    if ((v = secure_getenv("COOP_STATS")) != NULL)
        core->stats = parse_bool("COOP_STATS", v);
    if ((v = secure_getenv("COOP_DUMP_SIGNAL")) != NULL)
        shim_dump_signal = parse_signal("COOP_DUMP_SIGNAL", v);
    if ((v = secure_getenv("COOP_MAX_BLOCKING_MS")) != NULL)
        core->max_blocking_ms = (int)parse_number("COOP_MAX_BLOCKING_MS", v, 0, 3600000);
    if ((v = secure_getenv("COOP_ON_DEADLOCK")) != NULL)
        core->on_deadlock_wait = parse_choice("COOP_ON_DEADLOCK", v, deadlock_actions, "expected exit or wait") == 1;
    if ((v = secure_getenv("COOP_THREADPOOL_SIZE")) != NULL)     /* libuv's limit: 1024 */
        coop_offload_configure((unsigned)parse_number("COOP_THREADPOOL_SIZE", v, 1, 1024));
    if ((v = secure_getenv("COOP_FILE_OFFLOAD")) != NULL)
        shim_file_offload = parse_bool("COOP_FILE_OFFLOAD", v);
    if ((v = secure_getenv("COOP_NO_INHERIT")) != NULL && parse_bool("COOP_NO_INHERIT", v))
        shim_proc_no_inherit();
    if ((v = secure_getenv("COOP_VERBOSE")) != NULL && parse_bool("COOP_VERBOSE", v)) {

        core->verbose = true;
        print_patched();
    }
}
