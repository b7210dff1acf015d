/*
 * exec_inherit FORM: what a thread hands on to the program it executes and to the children
 * it starts, which the kernel keeps per thread: its signal mask and pending signals, its CPU
 * affinity and its scheduling policy.
 *
 * Every thread blocks SIGUSR1, SIGUSR2 and SIGRTMIN+1; the caller blocks SIGTERM too, makes
 * SIGUSR1 pending for itself (raise), SIGRTMIN+1 twice, with the values 1 and 2
 * (pthread_sigqueue), and SIGUSR2 for the process (kill), pins itself to one CPU and takes
 * SCHED_BATCH (sched_setscheduler from main, pthread_setschedparam from a thread). SIGUSR1
 * and SIGUSR2 have handlers. An execvp of a program that is nowhere must fail and leave all
 * that as it was, for the caller and for the other thread, which then prints what the kernel
 * says of its own OS thread (under coop maybe the caller's hub's, which must have its own
 * state back); then FORM runs this program again as "report", which prints what it
 * inherited and takes its pending signals:
 *
 *   execve execv execvp execvpe execl execle execlp fexecve execveat
 *                          from a second thread, while main joins it
 *   main-execl main-execveat
 *                          from main, beside a second thread that waits
 *   system popen spawn fork
 *                          a child that system(), popen(), posix_spawn or fork starts from a
 *                          second thread (a child inherits no pending signal, and the shell
 *                          of system() and popen() clears its mask; the forked child prints
 *                          its own state)
 *
 *   stress   three threads queue 100 signals each at main (SIGRTMIN+2, which it blocks, each
 *            with a value of its own) while main makes failed execs, one or more between
 *            every ten a thread sends; then main takes them all: each value once, none lost
 *            and none twice, and its mask as it was after every exec
 *
 * The output must equal the native run's. SIGURG is left out of what is printed: a
 * preemption signal of coop's may come along into the new program (ignored, as natively).
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/wait.h>

extern char **environ;

static const char *form;
static char self[4096];

static void print_signals(const char *what, const sigset_t *set)
{
    printf("; %s", what);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGURG && sigismember(set, sig) == 1)
            printf(" %d", sig);
}

static const char *policy_name(int policy)
{
    return policy == SCHED_BATCH ? "batch" : policy == SCHED_OTHER ? "other" : "another";
}

static void print_state(const char *when)
{
    sigset_t blocked, pending;
    pthread_sigmask(SIG_BLOCK, NULL, &blocked);
    sigpending(&pending);
    printf("%s", when);
    print_signals("blocked", &blocked);
    print_signals("pending", &pending);
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) != 0)
        die_errno("sched_getaffinity");
    printf("; cpus");
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &cpus))
            printf(" %d", cpu);
    int policy;
    struct sched_param param;
    pthread_getschedparam(pthread_self(), &policy, &param);
    printf("; policy %s, ", policy_name(policy));
    printf("sched_getscheduler %s\n", policy_name(sched_getscheduler(0)));
    fflush(stdout);
}

/* The signals of a hexadecimal set from /proc, SIGURG left out. */
static void print_hex_signals(const char *what, const char *hex)
{
    unsigned long long bits = strtoull(hex, NULL, 16);
    printf("; %s", what);
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGURG && (bits >> (sig - 1) & 1))
            printf(" %d", sig);
}

/* What the kernel says of the calling OS thread: its mask, its own pending signals, its
 * CPUs and its policy. */
static void print_kernel_state(const char *who)
{
    char line[512], policy[16] = "?";
    FILE *f = fopen("/proc/thread-self/status", "r");
    if (f == NULL)
        die_errno("/proc/thread-self/status");
    printf("%s, by the kernel", who);
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "SigBlk:", 7) == 0)
            print_hex_signals("blocked", line + 7);
        else if (strncmp(line, "SigPnd:", 7) == 0)
            print_hex_signals("pending", line + 7);
        else if (strncmp(line, "Cpus_allowed_list:", 18) == 0)
            printf("; cpus %s", line + 18 + strspn(line + 18, " \t"));
    }
    fclose(f);
    f = fopen("/proc/thread-self/stat", "r");
    if (f == NULL || fgets(line, sizeof line, f) == NULL)
        die_errno("/proc/thread-self/stat");
    fclose(f);
    char *field = strrchr(line, ')');      /* past the name, which may hold spaces */
    for (int n = 2; field != NULL && n < 41; n++)
        field = strchr(field + 1, ' ');    /* field 41 is the policy */
    if (field != NULL)
        snprintf(policy, sizeof policy, "%d", atoi(field + 1));
    printf("; policy %s\n", policy);
    fflush(stdout);
}

/* The caller's failed exec is over: the other thread prints its own OS thread's state. */
static int to_other[2], from_other[2];

static void other_thread_looks(void)
{
    char byte;
    if (read(to_other[0], &byte, 1) != 1)
        die_errno("read");
    print_kernel_state("the other thread");
    if (write(from_other[1], &byte, 1) != 1)
        die_errno("write");
}

/* Takes the pending signals and prints them by number, each number's in the order taken:
 * the kernel hands out a thread's own before the process's, and under coop all of them are
 * the thread's in the new program. */
static void report(void)
{
    print_state("inherited");
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGURG);
    siginfo_t taken[64];
    int n = 0;
    while (n < 64 && sigtimedwait(&all, &taken[n], &(struct timespec){ 0, 0 }) > 0)
        n++;
    for (int sig = 1; sig < NSIG; sig++)
        for (int i = 0; i < n; i++) {
            if (taken[i].si_signo != sig)
                continue;
            if (sig >= SIGRTMIN)
                printf("took %d, value %d\n", sig, taken[i].si_value.sival_int);
            else
                printf("took %d\n", sig);
        }
}

static void block(int first, ...)
{
    sigset_t set;
    sigemptyset(&set);
    va_list ap;
    va_start(ap, first);
    for (int sig = first; sig != 0; sig = va_arg(ap, int))
        sigaddset(&set, sig);
    va_end(ap);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* The caller's state, as the comment at the top says. */
static void take_state(void)
{
    block(SIGTERM, 0);
    raise(SIGUSR1);
    for (int value = 1; value <= 2; value++)
        if (pthread_sigqueue(pthread_self(), SIGRTMIN + 1, (union sigval){ .sival_int = value }) != 0)
            die("pthread_sigqueue failed");
    kill(getpid(), SIGUSR2);
    cpu_set_t cpus, last;
    if (sched_getaffinity(0, sizeof cpus, &cpus) != 0)
        die_errno("sched_getaffinity");
    CPU_ZERO(&last);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &cpus)) {
            CPU_ZERO(&last);
            CPU_SET(cpu, &last);
        }
    if (pthread_setaffinity_np(pthread_self(), sizeof last, &last) != 0)
        die("pthread_setaffinity_np failed");
    struct sched_param param = { 0 };
    if (strncmp(form, "main-", 5) == 0 ? sched_setscheduler(0, SCHED_BATCH, &param) != 0
                                       : pthread_setschedparam(pthread_self(), SCHED_BATCH, &param) != 0)
        die("sched_setscheduler or pthread_setschedparam failed");
    print_state("before");
}

static void exec_missing(void)
{
    char *argv[] = { "coop-exec-inherit-missing", NULL };
    execvp(argv[0], argv);
    printf("execvp of a missing program: %s\n", errno == ENOENT ? "ENOENT" : strerror(errno));
    print_state("after it");
}

static void run_form(void)
{
    char *argv[] = { self, "report", NULL };
    const char *name = strncmp(form, "main-", 5) == 0 ? form + 5 : form;
    if (strcmp(name, "system") == 0 || strcmp(name, "popen") == 0 || strcmp(name, "spawn") == 0
        || strcmp(name, "fork") == 0) {
        int status;
        pid_t pid;
        char command[sizeof self + 16];
        snprintf(command, sizeof command, "%s report", self);
        if (strcmp(name, "system") == 0) {
            status = system(command);
        } else if (strcmp(name, "popen") == 0) {
            FILE *child = popen(command, "r");
            char line[512];
            while (child != NULL && fgets(line, sizeof line, child) != NULL)
                fputs(line, stdout);
            status = child != NULL ? pclose(child) : -1;
        } else if (strcmp(name, "spawn") == 0) {
            if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0 || waitpid(pid, &status, 0) != pid)
                die("posix_spawn or waitpid failed");
        } else if ((pid = fork()) == 0) {
            print_state("forked");       /* nothing pending in a child */
            print_kernel_state("forked");
            _exit(0);
        } else if (pid < 0 || waitpid(pid, &status, 0) != pid) {
            die("fork or waitpid failed");
        }
        printf("%s: status %d\n", name, status);
        print_state("after it");
        exit(0);
    }
    if (strcmp(name, "execl") == 0)
        execl(self, self, "report", (char *)NULL);
    else if (strcmp(name, "execle") == 0)
        execle(self, self, "report", (char *)NULL, environ);
    else if (strcmp(name, "execlp") == 0)
        execlp(self, self, "report", (char *)NULL);
    else if (strcmp(name, "execve") == 0)
        execve(self, argv, environ);
    else if (strcmp(name, "execvpe") == 0)
        execvpe(self, argv, environ);
    else if (strcmp(name, "execvp") == 0)
        execvp(self, argv);
    else if (strcmp(name, "execv") == 0)
        execv(self, argv);
    else if (strcmp(name, "fexecve") == 0)
        fexecve(open(self, O_RDONLY), argv, environ);
    else if (strcmp(name, "execveat") == 0)
        execveat(AT_FDCWD, self, argv, environ, 0);
    else
        die("unknown form %s", form);
    die("%s: %s", form, strerror(errno));
}

enum { SENDERS = 3, SENT = 100 };
static pthread_t target;
static atomic_long execs_failed;
static atomic_int senders_done;

static void *sender(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < SENT; i++) {
        if (i % 10 == 0) {      /* the rendezvous: a failed exec between every ten signals */
            long seen = atomic_load(&execs_failed);
            while (atomic_load(&execs_failed) == seen)
                sched_yield();
        }
        union sigval value = { .sival_int = id * SENT + i };
        while (pthread_sigqueue(target, SIGRTMIN + 2, value) == EAGAIN)
            sched_yield();
    }
    atomic_fetch_add(&senders_done, 1);
    return NULL;
}

static void stress(void)
{
    target = pthread_self();
    block(SIGRTMIN + 2, 0);
    sigset_t before, now;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    pthread_t senders[SENDERS];
    for (int id = 0; id < SENDERS; id++)
        if (pthread_create(&senders[id], NULL, sender, (void *)(intptr_t)id) != 0)
            die("pthread_create failed");
    char *argv[] = { "coop-exec-inherit-missing", NULL };
    while (atomic_load(&senders_done) < SENDERS) {
        if (execvp(argv[0], argv) != -1 || (errno != ENOENT && errno != EACCES))     /* EACCES: a PATH directory */
            die("execvp of a missing program: %s", strerror(errno));
        pthread_sigmask(SIG_BLOCK, NULL, &now);
        for (int sig = 1; sig < NSIG; sig++)
            if (sigismember(&before, sig) != sigismember(&now, sig))
                die("a failed exec changed the mask for signal %d", sig);
        atomic_fetch_add(&execs_failed, 1);
        sched_yield();
    }
    for (int id = 0; id < SENDERS; id++)
        pthread_join(senders[id], NULL);
    static bool seen[SENDERS * SENT];
    int taken = 0, twice = 0, sig;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 2);
    siginfo_t info;
    while ((sig = sigtimedwait(&set, &info, &(struct timespec){ 0, 0 })) > 0) {
        int value = info.si_value.sival_int;
        if (value < 0 || value >= SENDERS * SENT)
            die("a signal with the value %d", value);
        twice += seen[value];
        seen[value] = true;
        taken++;
    }
    printf("stress: %d of %d signals taken, %d twice, across failed execs\n", taken, SENDERS * SENT, twice);
}

static void *caller(void *unused)
{
    (void)unused;
    take_state();
    exec_missing();
    char byte = 'x';
    if (write(to_other[1], &byte, 1) != 1 || read(from_other[0], &byte, 1) != 1)
        die_errno("the rendezvous with the other thread");
    run_form();
    return NULL;
}

/* Main's other thread, in the main- forms: it looks, then waits for the exec to end it. */
static void *waiter(void *unused)
{
    other_thread_looks();
    char byte;
    return read(to_other[0], &byte, 1) == 1 ? unused : NULL;     /* never written again */
}

static void on_signal(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage: exec_inherit FORM|report");
    form = argv[1];
    if (strcmp(form, "report") == 0 || strcmp(form, "stress") == 0) {
        if (form[0] == 'r')
            report();
        else
            stress();
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        die_errno("readlink");
    self[n] = '\0';
    block(SIGUSR1, SIGUSR2, SIGRTMIN + 1, 0);
    signal(SIGUSR1, on_signal);
    signal(SIGUSR2, on_signal);
    pthread_t t;
    if (pipe(to_other) != 0 || pipe(from_other) != 0)
        die_errno("pipe");
    if (strncmp(form, "main-", 5) == 0) {
        if (pthread_create(&t, NULL, waiter, NULL) != 0)
            die("pthread_create failed");
        caller(NULL);
    }
    if (pthread_create(&t, NULL, caller, NULL) != 0)
        die("pthread_create failed");
    other_thread_looks();
    if (pthread_join(t, NULL) != 0)
        die("pthread_join failed");
    return 0;
}
