/* Start-up: read the settings, resolve libc, turn the main thread into a hub. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"

bool shim_patched[FAM_COUNT];
bool shim_always_cooperative;
atomic_bool shim_settings_read;        /* shim_patched holds the settings' word */
static _Atomic int thread_objects_early = -1;  /* what the settings said before: -1 unasked */

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

static const char *environment(const char *name) { return secure_getenv(name); }

/* A trace or profile file named without %p belongs to the process that first opens it,
 * named in COOP_TRACE_OWNER: that process keeps it across exec (a wrapper script that execs
 * the real program: same pid), while its children, which would overwrite it, go without. */
static void keep_to_self(const char **file)
{
    if (*file == NULL)
        return;
    if (strstr(*file, "%p") == NULL) {
        const char *owner = getenv("COOP_TRACE_OWNER");
        char pid[16];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        if (owner != NULL && strcmp(owner, pid) != 0) {
            *file = NULL;
            return;
        }
        setenv("COOP_TRACE_OWNER", pid, 1);
    }
    *file = strdup(*file);
}

/* Applies the settings, or stops the program before main on a bad one. */
static void read_settings(struct coop_settings *core)
{
    struct shim_settings s = { .core = *core };
    char error[512];
    if (shim_parse_settings(environment, &s, error, sizeof error) != 0) {
        size_t len = strlen(error);
        error[len++] = '\n';
        coop_write_stderr(error, len);
        _exit(2);
    }
    memcpy(shim_patched, s.patched, sizeof shim_patched);
    if (atomic_load(&thread_objects_early) >= 0)
        shim_patched[FAM_thread] = atomic_load(&thread_objects_early);
    atomic_store_explicit(&shim_settings_read, true, memory_order_release);
    *core = s.core;
    keep_to_self(&core->trace_file);
    keep_to_self(&core->profile_file);
    coop_log_level = s.log_level;
    shim_dump_signal = s.dump_signal;
    shim_file_offload = s.file_offload;
    shim_always_cooperative = s.always_cooperative;
    coop_offload_configure((unsigned)s.threadpool_size);
    shim_lingering_closes_max = s.threadpool_size / 2;
    if (s.no_inherit)
        shim_proc_no_inherit();
    if (core->verbose)
        print_patched();
}

/*
 * The loader may run other libraries' constructors before coop's, and their objects live
 * on: each must follow one protocol from its first use, since glibc's and coop's read an
 * rwlock's words differently (one that glibc left unlocked in its write phase reads, in
 * coop's, as held by a reader: BIND's libisc sets OpenSSL up in its constructor, and named
 * then waited for ever for that reader). So before the settings are read, the wrappers of
 * those objects ask the environment what the settings will say, once; the settings keep
 * that answer even if a constructor changed COOP_PATCH since (a bad setting stops the
 * program at coop's constructor anyway).
 */
bool shim_thread_objects_ours_before_start(void)
{
    int answer = atomic_load(&thread_objects_early);
    if (answer < 0) {
        struct shim_settings s = { 0 };
        char error[128];
        int saved_errno = errno;
        answer = shim_parse_settings(environment, &s, error, sizeof error) == 0 && s.patched[FAM_thread];
        errno = saved_errno;
        atomic_store(&thread_objects_early, answer);
    }
    return answer;
}

/* A greenlet's end, on its own stack: what glibc does when a thread ends. */
static void greenlet_exit(struct coop_greenlet *g)
{
    shim_locals_exit(g);
    shim_signal_thread_exit(g);
    shim_sched_exit(g);
}

__attribute__((constructor)) static void coop_start(void)
{
    shim_resolve_all();
    struct coop_settings settings = {
        .os_thread_self = (uintptr_t(*)(void))REAL(pthread_self),
        .os_thread_create = REAL(pthread_create),
        .os_thread_join = REAL(pthread_join),
        .os_sigaction = REAL(sigaction),
    };
    read_settings(&settings);
    coop_init(&settings);
    shim_signal_init();
    shim_thread_init();
    shim_sched_init();
    shim_mutex_init();
    shim_cancel_init();
    shim_locals_init();
    coop_set_exit_hook(greenlet_exit);
    shim_stdio_init();
}

