/*
 * signal_window: signals that land in a gap. Prints one line per check; the same lines
 * natively and under coop. Nothing depends on timing.
 *
 * A signal that arrives as sigsuspend or ppoll goes to sleep ends the wait, and its
 * handler runs once.
 *
 * The main thread blocks SIGUSR1 except in the wait, and a child process sends it one
 * SIGUSR1 after a while: natively that signal ends the wait (whenever it comes: pending
 * until the wait opens the mask, else delivered in it). The program also arms its own
 * clock_gettime (the executable's definition comes first, for libraries too), which sends
 * SIGUSR1 to the process on the first clock read after it is armed, through the kernel,
 * as another process would. glibc's sigsuspend and ppoll read no clock; a user-space wait
 * does, just before it sleeps: a wait that looked whether a handler ran before that read
 * and sleeps on after it would run the handler there and wake only for the child's signal
 * (two handlers; "main took SIGTERM 2 time(s)" in thread_signals, once in CI). The child's
 * signal, when it comes after the wait, is taken with sigtimedwait.
 *
 * No thread is created: under coop the main thread is the only one the kernel can deliver
 * to, so the armed signal lands right in the wait.
 */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static volatile sig_atomic_t ran;
static _Atomic bool armed;

static void on_usr1(int sig)
{
    (void)sig;
    ran++;
}

int clock_gettime(clockid_t clock, struct timespec *ts)
{
    if (atomic_load_explicit(&armed, memory_order_relaxed) && atomic_exchange(&armed, false))
        syscall(SYS_kill, getpid(), SIGUSR1);     /* kill() itself may stay in user space */
    return (int)syscall(SYS_clock_gettime, clock, ts);
}

static int wait_in_sigsuspend(const sigset_t *open)
{
    while (ran == 0)
        sigsuspend(open);
    return -1;
}

static int never_ready[2];

static int wait_in_ppoll(const sigset_t *open)
{
    struct pollfd p = { .fd = never_ready[0], .events = POLLIN };
    return ppoll(&p, 1, NULL, open);
}

/* One wait with SIGUSR1 open in it, and two senders: the armed clock and a child. */
static void one_wait(const char *what, int (*wait)(const sigset_t *open))
{
    sigset_t usr1, open;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &open);
    sigdelset(&open, SIGUSR1);
    ran = 0;
    pid_t child = fork();
    if (child < 0)
        die("fork: %s", strerror(errno));
    if (child == 0) {
        usleep(200 * 1000);     /* the wait's end does not depend on it: see the top */
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    atomic_store(&armed, true);
    int r = wait(&open);
    int err = errno;
    atomic_store(&armed, false);
    int during = ran;
    if (waitpid(child, NULL, 0) != child)
        die("waitpid: %s", strerror(errno));
    const struct timespec none = { 0, 0 };
    sigtimedwait(&usr1, NULL, &none);           /* the other sender's, if it came after */
    printf("%s: %s, handler ran %d time(s) in it\n", what, r == -1 && err == EINTR ? "EINTR" : "another result",
           during);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    if (pipe(never_ready) != 0)
        die("pipe: %s", strerror(errno));
    one_wait("sigsuspend", wait_in_sigsuspend);
    one_wait("ppoll with SIGUSR1 open", wait_in_ppoll);
    return 0;
}
