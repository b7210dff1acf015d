/*
 * signal_window: signals that land in a gap. Prints one line per check; the same lines
 * natively and under coop. Nothing depends on timing.
 *
 * 1, 2. A signal that arrives as sigsuspend or ppoll goes to sleep ends the wait, and its
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
 * No thread is created before 3: under coop the main thread is the only one the kernel can
 * deliver to, so the armed signal lands right in the wait.
 *
 * 3. A process-directed signal pending while every thread blocks it runs its handler in
 * the thread that unblocks it, though threads start meanwhile: under coop, threads that
 * block their hubs' OS threads in raw system calls make the monitor start spare hubs, whose
 * threads open every signal. (Sent before the program's first thread: no thread of the
 * process can take it.)
 *
 * With the argument "kernel-waits", instead: two signals that come while the thread they are
 * for is in the kernel or leaving a wait, each sent through the kernel when only that thread
 * opens it. Under coop this needs one OS thread the kernel can deliver to (COOP_HUBS=1,
 * COOP_HANDOFF_MS=0): a greenlet blocked in a real system call is interrupted only by a
 * signal that lands on its own OS thread.
 *
 * 4. A ppoll on an fd that no wait of coop's can watch (a regular file, asked for no event:
 * never ready) blocks in the real call; a signal its mask opens runs the handler in it and
 * ends it with EINTR.
 *
 * 5. A thread cancelled in sigsuspend runs its cleanup handler, which opens SIGUSR1 and sends
 * it to the process: the handler runs there, in that thread, before the thread ends.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static volatile sig_atomic_t ran, ran_in_main;
static _Atomic bool armed;
static pthread_t main_thread;

static void on_usr1(int sig)
{
    (void)sig;
    ran++;
    ran_in_main = pthread_equal(pthread_self(), main_thread);
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

static void *block_os_thread(void *unused)
{
    struct timespec t = { 0, 100 * 1000000 };
    syscall(SYS_nanosleep, &t, NULL);     /* not nanosleep(): coop's would wait in the hub */
    return unused;
}

static void pending_as_threads_start(void)
{
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    ran = 0;
    syscall(SYS_kill, getpid(), SIGUSR1);
    cpu_set_t cpus;
    int n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    n = n < 1 ? 1 : n > 64 ? 64 : n;      /* one per hub (coop's default: one per CPU) */
    pthread_t t[64];
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, block_os_thread, NULL) != 0)
            die("pthread_create");
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    int before = ran;
    ran_in_main = -1;
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    printf("a process signal pending as threads start: handler ran %d time(s) before it was unblocked, "
           "%d after, in the thread that unblocked it: %s\n", before, ran - before,
           ran_in_main == 1 ? "yes" : "no");
}

static void open_usr1_only_here(void)
{
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
}

static int started[2];      /* a thread tells the sending child it is about to wait */

static void *ppoll_on_a_file(void *unused)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("open: %s", strerror(errno));
    sigset_t open;
    pthread_sigmask(SIG_BLOCK, NULL, &open);
    sigdelset(&open, SIGUSR1);
    struct pollfd p = { .fd = fd, .events = 0 };
    ran = 0;
    if (write(started[1], "x", 1) != 1)
        die("write: %s", strerror(errno));
    int r = ppoll(&p, 1, NULL, &open);
    int err = errno;
    printf("ppoll on a file it cannot wait on cooperatively, SIGUSR1 open: %s, handler ran %d time(s) in it\n",
           r == -1 && err == EINTR ? "EINTR" : "another result", (int)ran);
    close(fd);
    return unused;
}

static void signal_in_real_ppoll(void)
{
    if (pipe(started) != 0)
        die("pipe: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0)
        die("fork: %s", strerror(errno));
    if (child == 0) {
        char c;
        if (read(started[0], &c, 1) == 1)
            kill(getppid(), SIGUSR1);
        _exit(0);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, ppoll_on_a_file, NULL) != 0)
        die("pthread_create");
    pthread_join(t, NULL);
    waitpid(child, NULL, 0);
    close(started[0]);
    close(started[1]);
}

static pthread_barrier_t about_to_wait;
static pthread_t cancelled;
static volatile sig_atomic_t ran_in_cancelled;

static void on_usr1_in_cleanup(int sig)
{
    (void)sig;
    ran_in_cancelled += pthread_equal(pthread_self(), cancelled);
}

static void send_usr1_from_cleanup(void *unused)
{
    (void)unused;
    open_usr1_only_here();
    syscall(SYS_kill, getpid(), SIGUSR1);
}

static void *suspend_until_cancelled(void *unused)
{
    sigset_t open;
    pthread_sigmask(SIG_BLOCK, NULL, &open);      /* SIGUSR1 stays blocked in the wait */
    pthread_cleanup_push(send_usr1_from_cleanup, NULL);
    pthread_barrier_wait(&about_to_wait);
    for (;;)
        sigsuspend(&open);
    pthread_cleanup_pop(0);
    return unused;
}

static void signal_in_cleanup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_in_cleanup;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_barrier_init(&about_to_wait, NULL, 2);
    if (pthread_create(&cancelled, NULL, suspend_until_cancelled, NULL) != 0)
        die("pthread_create");
    pthread_barrier_wait(&about_to_wait);
    pthread_cancel(cancelled);
    void *result;
    pthread_join(cancelled, &result);
    printf("cancelled in sigsuspend (%s), its cleanup handler's SIGUSR1 ran the handler %d time(s) in it\n",
           result == PTHREAD_CANCELED ? "cancelled" : "not cancelled", (int)ran_in_cancelled);
}

static void kernel_waits(void)
{
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);       /* every thread blocks it, but where noted */
    signal_in_real_ppoll();
    signal_in_cleanup();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    main_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    if (argc > 1 && strcmp(argv[1], "kernel-waits") == 0) {
        kernel_waits();
        return 0;
    }
    if (pipe(never_ready) != 0)
        die("pipe: %s", strerror(errno));
    one_wait("sigsuspend", wait_in_sigsuspend);
    one_wait("ppoll with SIGUSR1 open", wait_in_ppoll);
    pending_as_threads_start();
    return 0;
}
