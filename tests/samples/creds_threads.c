/*
 * creds_threads: setuid and its kin change every thread's credentials (POSIX; glibc makes
 * the call on each OS thread). Workers compute meanwhile, so the calls land on threads that
 * are busy; another thread changes the effective uid, then main changes it back, then main
 * drops root for good. After each step every thread reports its ids, and every task of the
 * process in /proc (coop's own threads included) must show them. Before that, initgroups
 * (whose setgroups is glibc's own) reaches every task too, and a child a thread forks
 * changes its ids alone, every task of it, after its forking thread ended. Needs root: status 77
 * otherwise. One line per step, the same natively and under coop.
 */
#define _GNU_SOURCE
#include "common.h"

#include <dirent.h>
#include <grp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

enum { WORKERS = 6, NOBODY = 65534 };

static _Atomic int step, reported;
static _Atomic int wrong;            /* a worker that saw other ids than the step's */
static pthread_barrier_t started;

struct ids { uid_t ruid, euid, suid; gid_t rgid, egid, sgid; };

static struct ids expected[4] = {
    { 0, 0, 0, 0, 0, 0 },
    { 0, NOBODY, 0, 0, 0, 0 },              /* another thread's setresuid(-1, NOBODY, -1) */
    { 0, 0, 0, 0, 0, 0 },                   /* main's seteuid(0) */
    { NOBODY, NOBODY, NOBODY, NOBODY, NOBODY, NOBODY },   /* main's setgroups, setgid, setuid */
};

static bool mine_are(const struct ids *want)
{
    struct ids now;
    getresuid(&now.ruid, &now.euid, &now.suid);
    getresgid(&now.rgid, &now.egid, &now.sgid);
    return memcmp(&now, want, sizeof now) == 0;
}

static volatile double sink;

/* Computes until the step moves, then checks its own ids and reports. */
static void *worker(void *unused)
{
    pthread_barrier_wait(&started);
    for (int seen = 0; seen < 3;) {
        while (atomic_load(&step) == seen)
            sink = sink * 1.0000001 + 1e-9;
        seen = atomic_load(&step);
        if (!mine_are(&expected[seen]))
            atomic_fetch_add(&wrong, 1);
        atomic_fetch_add(&reported, 1);
    }
    return unused;
}

/* Tasks of this process whose lines starting with `first` or `second` are not these; not
 * an ended one (a main thread that called pthread_exit stays listed, a zombie). */
static int tasks_without(const char *first, const char *second)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        die("/proc/self/task: %s", strerror(errno));
    int otherwise = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;                   /* it ended meanwhile */
        bool first_ok = false, second_ok = false, ended = false;
        while (fgets(line, sizeof line, f) != NULL) {
            first_ok |= strncmp(line, first, strlen(first)) == 0;
            second_ok |= strncmp(line, second, strlen(second)) == 0;
            ended |= strncmp(line, "State:\tZ", 8) == 0;
        }
        fclose(f);
        otherwise += !(first_ok && second_ok) && !ended;
    }
    closedir(d);
    return otherwise;
}

/* Tasks of this process whose Uid/Gid lines differ from want. */
static int tasks_otherwise(const struct ids *want)
{
    char uid_line[128], gid_line[128];
    snprintf(uid_line, sizeof uid_line, "Uid:\t%u\t%u\t%u\t", (unsigned)want->ruid, (unsigned)want->euid,
             (unsigned)want->suid);
    snprintf(gid_line, sizeof gid_line, "Gid:\t%u\t%u\t%u\t", (unsigned)want->rgid, (unsigned)want->egid,
             (unsigned)want->sgid);
    return tasks_without(uid_line, gid_line);
}

/* A thread forks; in the child the forking thread starts two others and ends, and one of
 * them, off the OS thread that forked if it can (under coop the ended thread's record is the
 * one glibc knows that OS thread by), changes the effective uid: every task of the child
 * has the new one, the parent the old. */
static _Atomic bool child_moved;

/* Keeps a second thread ready, so that under coop another hub takes one of the two. */
static void *child_yielder(void *unused)
{
    while (!atomic_load(&child_moved))
        sched_yield();
    return unused;
}

static void *child_thread(void *forker)
{
    pthread_join(*(pthread_t *)forker, NULL);
    for (int tries = 0; tries < 100000 && gettid() == getpid(); tries++)
        sched_yield();
    atomic_store(&child_moved, true);
    bool changed = setresuid(-1, NOBODY, -1) == 0 && geteuid() == NOBODY;
    _exit(changed && tasks_otherwise(&expected[1]) == 0 ? 0 : 1);
}

static int child_changes_ids(void)
{
    static pthread_t forker, thread, yielder;
    forker = pthread_self();
    if (pthread_create(&yielder, NULL, child_yielder, NULL) != 0
        || pthread_create(&thread, NULL, child_thread, &forker) != 0)
        return 2;
    pthread_exit(NULL);
}

static void *fork_and_change(void *unused)
{
#if defined(__SANITIZE_ADDRESS__)
    /* GCC 12's ASan allocator takes no lock around fork, as glibc's malloc does: a child
     * that allocates may find it locked by a thread of the parent, for ever. */
    printf("a forked child whose forking thread ended changed the ids of all its tasks: not run (ASan)\n");
    return unused;
#endif
    pid_t child = fork();
    if (child == 0)
        _exit(child_changes_ids());
    int status;
    if (child < 0 || waitpid(child, &status, 0) != child)
        die("fork");
    printf("a forked child whose forking thread ended changed the ids of all its tasks: %s; "
           "the parent's stayed: %s\n",
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "yes" : "no", mine_are(&expected[0]) ? "yes" : "no");
    return unused;
}

/* Makes step s's change, moves to it and waits for every worker's report. */
static void next_step(int s, void (*change)(void))
{
    atomic_store(&reported, 0);
    change();
    atomic_store(&step, s);
    while (atomic_load(&reported) < WORKERS)
        sched_yield();
    printf("step %d: workers with other ids: %d; tasks with other ids: %d\n", s, atomic_load(&wrong),
           tasks_otherwise(&expected[s]));
}

static void *euid_nobody(void *unused)
{
    if (setresuid(-1, NOBODY, -1) != 0)
        die("setresuid: %s", strerror(errno));
    return unused;
}

static void euid_nobody_elsewhere(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, euid_nobody, NULL) != 0)
        die("pthread_create");
    pthread_join(t, NULL);
}

static void euid_back(void)
{
    if (seteuid(0) != 0)
        die("seteuid: %s", strerror(errno));
}

static void drop_root(void)
{
    gid_t groups[1] = { NOBODY };
    if (setgroups(1, groups) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
        die("dropping root: %s", strerror(errno));
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (geteuid() != 0) {
        fprintf(stderr, "creds_threads: needs root\n");
        return 77;
    }
    gid_t none[1] = { 0 };
    if (setgroups(1, none) != 0)
        die("setgroups: %s", strerror(errno));
    pthread_barrier_init(&started, NULL, WORKERS + 1);
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0)
            die("pthread_create");
    pthread_barrier_wait(&started);
    pthread_t forker;
    if (pthread_create(&forker, NULL, fork_and_change, NULL) != 0)
        die("pthread_create");
    pthread_join(forker, NULL);
    if (initgroups("root", NOBODY) != 0)
        die("initgroups: %s", strerror(errno));
    char groups[256] = "";
    FILE *self = fopen("/proc/thread-self/status", "r");
    while (self != NULL && fgets(groups, sizeof groups, self) != NULL && strncmp(groups, "Groups:", 7) != 0)
        ;
    if (self != NULL)
        fclose(self);
    printf("initgroups: tasks with other groups than the caller's: %d\n", tasks_without(groups, groups));
    if (setgroups(1, none) != 0)
        die("setgroups: %s", strerror(errno));
    next_step(1, euid_nobody_elsewhere);
    next_step(2, euid_back);
    next_step(3, drop_root);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    return 0;
}
