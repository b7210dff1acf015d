/*
 * signal [-m kernel|pthread_kill] [-n OPS] [-t SECONDS]: what it costs to run a handler.
 *
 *   kernel        a raw tgkill system call to the thread's own tid: the kernel delivers
 *                 every signal, as it does a timer's or a peer's (under coop, through the
 *                 trampoline that steers it to a greenlet).
 *   pthread_kill  pthread_kill(pthread_self()): under coop a signal between greenlets, which
 *                 never reaches the kernel.
 *
 * One thread, whose handler counts. Without -m, every mode runs. Each line:
 * bench=signal_MODE ns_per_op=X ops=N, X per signal sent and handled.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

static volatile sig_atomic_t handled;

static void count(int sig)
{
    (void)sig;
    handled++;
}

static void by_kernel(void *unused, long n)
{
    (void)unused;
    pid_t pid = getpid(), tid = (pid_t)syscall(SYS_gettid);
    for (long i = 0; i < n; i++)
        syscall(SYS_tgkill, pid, tid, SIGUSR1);
}

static void by_pthread_kill(void *unused, long n)
{
    (void)unused;
    for (long i = 0; i < n; i++)
        pthread_kill(pthread_self(), SIGUSR1);
}

static void bench(const struct bench_options *o, const char *mode, void (*send)(void *, long))
{
    if (!bench_wants(o, mode))
        return;
    uint64_t ns;
    handled = 0;
    long ops = bench_loop(o, send, NULL, &ns);
    if (handled != ops)
        die("%s: %ld signals sent, %ld handled", mode, ops, (long)handled);
    char name[64];
    snprintf(name, sizeof name, "signal_%s", mode);
    bench_report(name, ops, ns, NULL);
}

int main(int argc, char **argv)
{
    struct bench_options o = bench_parse(argc, argv, 1000000, "signal [-m kernel|pthread_kill] [-n OPS] [-t SECONDS]");
    struct sigaction a = { .sa_handler = count };
    if (sigaction(SIGUSR1, &a, NULL) != 0)
        die_errno("sigaction");
    bench(&o, "kernel", by_kernel);
    bench(&o, "pthread_kill", by_pthread_kill);
    return 0;
}
