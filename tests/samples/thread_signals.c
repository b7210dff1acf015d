/*
 * thread_signals: signal masks, pending sets and delivery are per thread (POSIX). Prints one
 * line per check; the same lines natively and under coop. Nothing depends on timing: every
 * step waits for the one before (joins, barriers, sigsuspend on a blocked signal).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define THREADS 50

static void handle(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigaction(sig, &sa, NULL);
}

static sigset_t only(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return set;
}

static bool pending_here(int sig)
{
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, sig) == 1;
}

/* --- 1. workers block every signal; main waits for SIGTERM from another process --- */

static pthread_barrier_t workers_ready;
static volatile sig_atomic_t terms;
static pthread_t term_thread;

static void on_term(int sig)
{
    (void)sig;
    terms++;
    term_thread = pthread_self();
}

static void *blocking_worker(void *unused)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_barrier_wait(&workers_ready);
    pthread_barrier_wait(&workers_ready);     /* until main has its SIGTERM */
    return unused;
}

/* A child process that sends this one SIGTERM and ends: a signal from another process. */
static pid_t sigterm_from_child(void)
{
    pid_t child = fork();
    if (child == 0) {
        kill(getppid(), SIGTERM);
        _exit(0);
    }
    return child;
}

static void sigterm_reaches_main(void)
{
    pthread_t w[4];
    pthread_barrier_init(&workers_ready, NULL, 5);
    handle(SIGTERM, on_term);
    sigset_t term = only(SIGTERM), old;
    pthread_sigmask(SIG_BLOCK, &term, &old);
    for (int i = 0; i < 4; i++)
        pthread_create(&w[i], NULL, blocking_worker, NULL);
    pthread_barrier_wait(&workers_ready);
    pid_t child = sigterm_from_child();
    while (terms == 0)
        sigsuspend(&old);
    waitpid(child, NULL, 0);
    pthread_barrier_wait(&workers_ready);
    for (int i = 0; i < 4; i++)
        pthread_join(w[i], NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    printf("workers block every signal: main took SIGTERM %d time(s), in main: %s\n", (int)terms,
           pthread_equal(term_thread, pthread_self()) ? "yes" : "no");
}

/* --- 2. pthread_kill to each of 50 threads: each handler runs on its target --- */

static __thread volatile sig_atomic_t usr1_here;
static pthread_t targets[THREADS];
static _Atomic int right_thread, wrong_thread;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_here++;
    bool mine = false;
    for (int i = 0; i < THREADS; i++)
        mine |= pthread_equal(targets[i], pthread_self());
    if (mine)
        right_thread++;
    else
        wrong_thread++;
}

static pthread_barrier_t all_blocked;

static void *usr1_target(void *unused)
{
    sigset_t usr1 = only(SIGUSR1), open;
    pthread_sigmask(SIG_BLOCK, &usr1, &open);
    sigdelset(&open, SIGUSR1);
    pthread_barrier_wait(&all_blocked);
    while (usr1_here == 0)
        sigsuspend(&open);
    return unused;
}

static void pthread_kill_each(void)
{
    handle(SIGUSR1, on_usr1);
    sigset_t usr1 = only(SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);     /* main never takes it */
    pthread_barrier_init(&all_blocked, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&targets[i], NULL, usr1_target, NULL);
    pthread_barrier_wait(&all_blocked);
    for (int i = 0; i < THREADS; i++)
        pthread_kill(targets[i], SIGUSR1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(targets[i], NULL);
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    printf("pthread_kill to %d threads: %d handlers on their target, %d elsewhere\n", THREADS,
           (int)right_thread, (int)wrong_thread);
}

/* --- 3. a blocked thread-directed signal waits for its thread only --- */

static pthread_barrier_t step;
static volatile sig_atomic_t usr2_ran;
static pthread_t usr2_in;

static void on_usr2(int sig)
{
    (void)sig;
    usr2_ran++;
    usr2_in = pthread_self();
}

static void *blocker(void *unused)
{
    sigset_t usr2 = only(SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    pthread_barrier_wait(&step);               /* 1: blocked */
    pthread_barrier_wait(&step);               /* 2: main sent it */
    printf("blocked in the target: pending there %s, handler ran %d\n",
           pending_here(SIGUSR2) ? "yes" : "no", (int)usr2_ran);
    pthread_barrier_wait(&step);               /* 3: printed */
    pthread_barrier_wait(&step);               /* 4: main looked */
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    printf("unblocked: handler ran %d time(s) before pthread_sigmask returned, in the target: %s\n",
           (int)usr2_ran, pthread_equal(usr2_in, pthread_self()) ? "yes" : "no");
    return unused;
}

static void pending_per_thread(void)
{
    handle(SIGUSR2, on_usr2);
    pthread_barrier_init(&step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, blocker, NULL);
    pthread_barrier_wait(&step);
    pthread_kill(t, SIGUSR2);
    pthread_barrier_wait(&step);
    pthread_barrier_wait(&step);
    printf("in another thread: pending %s\n", pending_here(SIGUSR2) ? "yes" : "no");
    pthread_barrier_wait(&step);
    pthread_join(t, NULL);
}

/* --- 4. a new thread inherits the mask (or takes its attributes'), not the pending signals --- */

static void *newborn(void *unused)
{
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    printf("new thread: SIGUSR2 blocked %s, pending %s\n", sigismember(&mask, SIGUSR2) == 1 ? "yes" : "no",
           pending_here(SIGUSR2) ? "yes" : "no");
    return unused;
}

static void inherit_mask_not_pending(void)
{
    sigset_t usr2 = only(SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    raise(SIGUSR2);
    printf("raise while blocked: pending in the raiser %s\n", pending_here(SIGUSR2) ? "yes" : "no");
    pthread_t t;
    pthread_create(&t, NULL, newborn, NULL);
    pthread_join(t, NULL);
    pthread_attr_t attr;        /* a mask in the attributes replaces the creator's */
    sigset_t none;
    sigemptyset(&none);
    pthread_attr_init(&attr);
    pthread_attr_setsigmask_np(&attr, &none);
    printf("with an empty mask in its attributes: ");
    pthread_create(&t, &attr, newborn, NULL);
    pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
    int sig = 0;
    sigwait(&usr2, &sig);
    printf("the raiser's sigwait took %d\n", sig);
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
}

/* --- 5. sigwait: only the thread a signal is sent to takes it --- */

static int taken[2];

static void *waiter(void *slot)
{
    sigset_t usr1 = only(SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    pthread_barrier_wait(&step);
    int sig;
    sigwait(&usr1, &sig);
    *(int *)slot = sig;
    return NULL;
}

static void sigwait_directed(void)
{
    pthread_barrier_init(&step, NULL, 3);
    pthread_t a, b;
    pthread_create(&a, NULL, waiter, &taken[0]);
    pthread_create(&b, NULL, waiter, &taken[1]);
    pthread_barrier_wait(&step);
    pthread_kill(a, SIGUSR1);
    pthread_join(a, NULL);
    printf("sigwait: the target took %d, the other %d\n", taken[0], taken[1]);
    pthread_kill(b, SIGUSR1);
    pthread_join(b, NULL);
    printf("sigwait: then the other took %d\n", taken[1]);
}

/* --- 6. ppoll with a mask: the signal it unblocks ends it with EINTR --- */

static volatile sig_atomic_t polled_ran;
static void on_usr1_poll(int sig) { (void)sig; polled_ran++; }

static void *poller(void *fd)
{
    sigset_t usr1 = only(SIGUSR1), open;
    pthread_sigmask(SIG_BLOCK, &usr1, &open);
    sigdelset(&open, SIGUSR1);
    pthread_barrier_wait(&step);
    struct pollfd p = { *(int *)fd, POLLIN, 0 };
    int r = ppoll(&p, 1, NULL, &open);
    printf("ppoll with SIGUSR1 open: %d %s, handler ran %d\n", r, r < 0 ? strerrorname_np(errno) : "",
           (int)polled_ran);
    return NULL;
}

static void ppoll_mask(void)
{
    handle(SIGUSR1, on_usr1_poll);
    int fds[2];
    if (pipe(fds) != 0)
        exit(1);
    pthread_barrier_init(&step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, poller, &fds[0]);
    pthread_barrier_wait(&step);
    pthread_kill(t, SIGUSR1);      /* blocked outside ppoll: pending until ppoll opens it */
    pthread_join(t, NULL);
    close(fds[0]);
    close(fds[1]);
}

/* --- 7. a process-directed signal every thread blocks stays pending for the process --- */

static volatile sig_atomic_t hup_ran;
static pthread_t hup_in;
static void on_hup(int sig) { (void)sig; hup_ran++; hup_in = pthread_self(); }

static void *hup_taker(void *unused)
{
    pthread_barrier_wait(&step);                /* main sent it; it is blocked here too */
    printf("process signal blocked everywhere: pending here %s, handler ran %d\n",
           pending_here(SIGHUP) ? "yes" : "no", (int)hup_ran);
    sigset_t hup = only(SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &hup, NULL);
    printf("the thread that unblocked it ran its handler: %s\n",
           hup_ran == 1 && pthread_equal(hup_in, pthread_self()) ? "yes" : "no");
    return unused;
}

static void process_pending(void)
{
    handle(SIGHUP, on_hup);
    sigset_t hup = only(SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    pthread_barrier_init(&step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, hup_taker, NULL);
    kill(getpid(), SIGHUP);
    pthread_barrier_wait(&step);
    pthread_join(t, NULL);
    printf("main, still blocking it, ran the handler %d time(s)\n", hup_ran && !pthread_equal(hup_in, pthread_self()) ? 0 : 1);
}

/* --- 8. threads change their masks all at once, on every hub: afterwards a process signal
 * that all but one block still reaches that one --- */

#define STORM_THREADS 8
#define STORM_ROUNDS 2000

static pthread_barrier_t storm;
static pthread_t storm_taker;
static volatile sig_atomic_t storm_taken;
static _Atomic int storm_elsewhere;

static void on_usr2_storm(int sig)
{
    (void)sig;
    if (pthread_equal(pthread_self(), storm_taker))
        storm_taken++;
    else
        storm_elsewhere++;
}

static void *storm_worker(void *taker)
{
    sigset_t usr2 = only(SIGUSR2);
    pthread_barrier_wait(&storm);
    for (int i = 0; i < STORM_ROUNDS; i++) {
        pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
        pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    }
    pthread_barrier_wait(&storm);             /* every thread blocks SIGUSR2 again */
    if (taker != NULL) {
        sigset_t open;
        pthread_sigmask(SIG_BLOCK, NULL, &open);
        sigdelset(&open, SIGUSR2);
        while (storm_taken == 0)
            sigsuspend(&open);
    }
    return NULL;
}

static void mask_storm(void)
{
    pthread_t w[STORM_THREADS];
    handle(SIGUSR2, on_usr2_storm);
    sigset_t usr2 = only(SIGUSR2), old;
    pthread_sigmask(SIG_BLOCK, &usr2, &old);
    pthread_barrier_init(&storm, NULL, STORM_THREADS + 1);
    for (int i = 0; i < STORM_THREADS; i++)
        pthread_create(&w[i], NULL, storm_worker, i == 0 ? (void *)1 : NULL);
    storm_taker = w[0];
    pthread_barrier_wait(&storm);
    pthread_barrier_wait(&storm);
    kill(getpid(), SIGUSR2);                  /* only the taker, in sigsuspend, accepts it */
    for (int i = 0; i < STORM_THREADS; i++)
        pthread_join(w[i], NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    printf("%d threads changed their masks %d times at once: the one that waited took SIGUSR2 %d time(s), "
           "others %d\n", STORM_THREADS, 2 * STORM_ROUNDS, (int)storm_taken, atomic_load(&storm_elsewhere));
}

/* --- 9. pthread_kill to a thread as it exits: the handler runs in it, or nowhere --- */

#define EXITING_THREADS 100
#define EXITING_KILLS 50

static pthread_t exiting;
static _Atomic int ran_elsewhere;
static _Atomic bool exiting_done;

static void on_usr1_exiting(int sig)
{
    (void)sig;
    if (!pthread_equal(pthread_self(), exiting))
        ran_elsewhere++;
}

static void *exit_at_once(void *unused)
{
    exiting_done = true;
    return unused;
}

static void kill_as_it_exits(void)
{
    handle(SIGUSR1, on_usr1_exiting);
    for (int i = 0; i < EXITING_THREADS; i++) {
        exiting_done = false;
        pthread_create(&exiting, NULL, exit_at_once, NULL);
        while (!exiting_done)
            sched_yield();
        for (int k = 0; k < EXITING_KILLS; k++)     /* under coop, maybe from another hub as it ends */
            pthread_kill(exiting, SIGUSR1);
        pthread_join(exiting, NULL);
        usleep(100);              /* a wait: a signal handed to this thread runs here */
    }
    printf("pthread_kill to %d threads as they exit: handlers run elsewhere %d\n", EXITING_THREADS,
           atomic_load(&ran_elsewhere));
}

/* --- 10. a signal handled before a call does not interrupt the call --- */

static volatile sig_atomic_t before_ran;
static pthread_t spinner;
static atomic_bool before_sent;

static void on_usr1_before(int sig)
{
    (void)sig;
    before_ran++;
}

static void *send_to_spinner(void *unused)
{
    pthread_kill(spinner, SIGUSR1);
    atomic_store(&before_sent, true);
    return unused;
}

static const char *outcome(int r, int err) { return r == 0 ? "0" : err == ETIMEDOUT ? "ETIMEDOUT" : err == EINTR ? "EINTR" : "another error"; }

/* Main spins (under coop the signal waits in its queue meanwhile), then changes its mask,
 * which delivers the signal before the call returns; the timed waits after it must time
 * out, not fail with EINTR for a signal already handled. */
static void handled_before_the_call(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_before;      /* no SA_RESTART: a wait it interrupted would fail */
    sigaction(SIGUSR1, &sa, NULL);
    spinner = pthread_self();
    pthread_t t;
    pthread_create(&t, NULL, send_to_spinner, NULL);
    while (!atomic_load(&before_sent))
        ;
    sigset_t usr2 = only(SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    int ran = before_ran;
    sem_t sem;
    sem_init(&sem, 0, 0);
    struct timespec past = { 0, 0 };
    int r = sem_timedwait(&sem, &past);
    const char *sem_result = outcome(r, errno);
    r = nanosleep(&(struct timespec){ 0, 1000 }, NULL);
    const char *sleep_result = outcome(r, errno);
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    sem_destroy(&sem);
    pthread_join(t, NULL);
    printf("a signal handled before the calls (%d time(s)): sem_timedwait in the past %s, nanosleep %s\n", ran,
           sem_result, sleep_result);
}

/* --- 11. a process signal pending as a thread's ppoll opens it, with the fd ready: ppoll
 * returns the fd (Linux looks at the fds first), and the signal, blocked again as ppoll
 * ends, stays pending for the process: another thread takes it --- */

static volatile sig_atomic_t opened_ran;
static void on_usr2_opened(int sig) { (void)sig; opened_ran++; }

static void *ready_poller(void *fd)
{
    sigset_t open;
    pthread_sigmask(SIG_BLOCK, NULL, &open);     /* SIGUSR2 blocked, as in main */
    sigdelset(&open, SIGUSR2);
    struct pollfd p = { *(int *)fd, POLLIN, 0 };
    int r = ppoll(&p, 1, NULL, &open);
    printf("ppoll opening a pending process signal, its fd ready: %d, handler ran %d\n", r, (int)opened_ran);
    return NULL;
}

static void ready_wait_leaves_it_pending(void)
{
    handle(SIGUSR2, on_usr2_opened);
    sigset_t usr2 = only(SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    int fds[2];
    if (pipe(fds) != 0 || write(fds[1], "x", 1) != 1)
        exit(1);
    kill(getpid(), SIGUSR2);
    pthread_t t;
    pthread_create(&t, NULL, ready_poller, &fds[0]);
    pthread_join(t, NULL);
    const struct timespec none = { 0, 0 };
    printf("then main takes it with sigtimedwait: %s\n", sigtimedwait(&usr2, NULL, &none) == SIGUSR2 ? "yes" : "no");
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    close(fds[0]);
    close(fds[1]);
}

/* --- 12. thread- and process-directed instances of one real-time signal: a thread's ppoll
 * that opens it, its fd ready, leaves each where it was; the thread that unblocks it next
 * takes the process's, the first thread keeps its own --- */

static _Atomic int rt_value_in_h = -1;
static pthread_t rt_h;
static pthread_barrier_t rt_step;

static void on_rt(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)context;
    if (pthread_equal(pthread_self(), rt_h))
        atomic_store(&rt_value_in_h, info->si_value.sival_int);
}

static void *rt_poller(void *fd)
{
    pthread_barrier_wait(&rt_step);             /* both sent */
    sigset_t open;
    pthread_sigmask(SIG_BLOCK, NULL, &open);
    sigdelset(&open, SIGRTMIN);
    struct pollfd p = { *(int *)fd, POLLIN, 0 };
    int r = ppoll(&p, 1, NULL, &open);
    pthread_barrier_wait(&rt_step);             /* polled */
    pthread_barrier_wait(&rt_step);             /* the other unblocked it */
    sigset_t rt = only(SIGRTMIN);
    siginfo_t info;
    const struct timespec none = { 0, 0 };
    int sig = sigtimedwait(&rt, &info, &none);
    printf("ppoll opening a real-time signal sent to it and to the process, its fd ready: %d; "
           "then it takes its own: value %d\n", r, sig == SIGRTMIN ? info.si_value.sival_int : -1);
    return NULL;
}

static void *rt_unblocker(void *unused)
{
    pthread_barrier_wait(&rt_step);
    pthread_barrier_wait(&rt_step);
    sigset_t rt = only(SIGRTMIN);
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);    /* the process's runs here before this returns */
    printf("the thread that unblocked it next ran the process's: value %d\n", atomic_load(&rt_value_in_h));
    pthread_sigmask(SIG_BLOCK, &rt, NULL);
    pthread_barrier_wait(&rt_step);
    return unused;
}

static void directed_and_lent(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN, &sa, NULL);
    sigset_t rt = only(SIGRTMIN);
    pthread_sigmask(SIG_BLOCK, &rt, NULL);
    int fds[2];
    if (pipe(fds) != 0 || write(fds[1], "x", 1) != 1)
        exit(1);
    pthread_barrier_init(&rt_step, NULL, 3);
    pthread_t w;
    pthread_create(&w, NULL, rt_poller, &fds[0]);
    pthread_create(&rt_h, NULL, rt_unblocker, NULL);
    pthread_sigqueue(w, SIGRTMIN, (union sigval){ .sival_int = 1 });
    sigqueue(getpid(), SIGRTMIN, (union sigval){ .sival_int = 2 });
    pthread_barrier_wait(&rt_step);
    pthread_barrier_wait(&rt_step);
    pthread_barrier_wait(&rt_step);
    pthread_join(w, NULL);
    pthread_join(rt_h, NULL);
    close(fds[0]);
    close(fds[1]);
}

/* --- 13. a sigwait for two signals takes one; the other, the process's, stays pending for
 * the thread that unblocks it next --- */

static volatile sig_atomic_t usr2_in_taker;
static pthread_t usr2_taker;

static void on_usr2_left(int sig)
{
    (void)sig;
    usr2_in_taker += pthread_equal(pthread_self(), usr2_taker);
}

static void *two_signal_waiter(void *unused)
{
    sigset_t both = only(SIGUSR1);
    sigaddset(&both, SIGUSR2);
    pthread_barrier_wait(&step);
    int sig = 0;
    sigwait(&both, &sig);
    printf("sigwait for SIGUSR1 and SIGUSR2, both sent to the process: took %s\n",
           sig == SIGUSR1 ? "SIGUSR1" : sig == SIGUSR2 ? "SIGUSR2" : "another");
    pthread_barrier_wait(&step);    /* it lives on while another unblocks SIGUSR2 */
    pthread_barrier_wait(&step);
    return unused;
}

static void *usr2_unblocker(void *unused)
{
    sigset_t usr2 = only(SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    printf("the thread that unblocked SIGUSR2 then ran its handler %d time(s)\n", (int)usr2_in_taker);
    return unused;
}

static void sigwait_leaves_the_other(void)
{
    handle(SIGUSR2, on_usr2_left);
    sigset_t both = only(SIGUSR1);
    sigaddset(&both, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &both, NULL);
    pthread_barrier_init(&step, NULL, 2);
    pthread_t w;
    pthread_create(&w, NULL, two_signal_waiter, NULL);
    pthread_barrier_wait(&step);
    sched_yield();                  /* under coop on one hub: the waiter waits before they come */
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR2);
    pthread_barrier_wait(&step);
    pthread_create(&usr2_taker, NULL, usr2_unblocker, NULL);
    pthread_join(usr2_taker, NULL);
    pthread_barrier_wait(&step);
    pthread_join(w, NULL);
    pthread_sigmask(SIG_UNBLOCK, &both, NULL);
}

/* --- 14. a thread whose handler, run in sigsuspend, jumps out of it with siglongjmp has the
 * mask it saved (not the handler's, nor another thread's), and exits normally --- */

static sigjmp_buf suspended;
static void on_usr1_jump(int sig)
{
    (void)sig;
    siglongjmp(suspended, 1);
}

static const char *blocked_here(int sig)
{
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, sig) ? "blocked" : "open";
}

static void *jump_out_then_exit(void *unused)
{
    sigset_t winch = only(SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &winch, NULL);   /* this thread's own */
    if (sigsetjmp(suspended, 1) == 0) {
        pthread_barrier_wait(&step);
        sigset_t open;
        pthread_sigmask(SIG_BLOCK, NULL, &open);
        sigdelset(&open, SIGUSR1);
        for (;;)
            sigsuspend(&open);
    }
    printf("after siglongjmp out of sigsuspend's handler: SIGUSR1 %s, SIGUSR2 %s, SIGWINCH %s\n",
           blocked_here(SIGUSR1), blocked_here(SIGUSR2), blocked_here(SIGWINCH));
    pthread_exit((void *)42);
    return unused;
}

static void jump_out_of_a_wait(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_jump;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);            /* blocked while it runs only */
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1 = only(SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    pthread_barrier_init(&step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, jump_out_then_exit, NULL);
    pthread_barrier_wait(&step);
    pthread_kill(t, SIGUSR1);
    void *result = NULL;
    pthread_join(t, &result);
    printf("then it exited with %ld\n", (long)result);
}

/* --- 15. a handler the kernel calls (a fault, a signal to the process) that jumps out with
 * siglongjmp leaves the thread taking that signal again: three of each caught --- */

static sigjmp_buf caught_at;
static void on_fault_or_alarm(int sig)
{
    (void)sig;
    siglongjmp(caught_at, 1);
}

static int *volatile nowhere;       /* a page nobody may touch (not NULL: sanitizers check that) */

static bool fault_caught(void)
{
    if (sigsetjmp(caught_at, 1) != 0)
        return true;
    *nowhere = 1;
    return false;
}

static bool alarm_caught(void)
{
    if (sigsetjmp(caught_at, 1) != 0)
        return true;
    syscall(SYS_kill, getpid(), SIGALRM);       /* through the kernel, as from another process */
    for (;;)
        pause();
}

static void jump_out_of_kernel_handlers(void)
{
    handle(SIGSEGV, on_fault_or_alarm);
    handle(SIGALRM, on_fault_or_alarm);
    nowhere = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (nowhere == MAP_FAILED)
        exit(1);
    int faults = 0, alarms = 0;
    for (int i = 0; i < 3; i++) {
        faults += fault_caught();
        alarms += alarm_caught();
    }
    signal(SIGSEGV, SIG_DFL);
    printf("faults caught with siglongjmp: %d; SIGALRMs: %d\n", faults, alarms);
}

/* --- 16. real-time signals queued past what may be queued, to a thread or to the process
 * while it blocks them: each call 0 or EAGAIN (the queue full), never more accepted than
 * RLIMIT_SIGPENDING, and as many handled as were accepted. How many fit depends on the
 * machine (natively the limit counts the user's other pending signals) and is not printed.
 * --- */

#define BURST 2000
#define LOW_LIMIT 64

static _Atomic int burst_handled;
static pthread_barrier_t burst_step;

static void on_burst(int sig) { (void)sig; burst_handled++; }

static void *burst_target(void *unused)
{
    pthread_barrier_wait(&burst_step);          /* blocking it, as main does */
    pthread_barrier_wait(&burst_step);          /* all sent */
    sigset_t rt = only(SIGRTMIN + 1);
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);    /* what it accepted runs before this returns */
    return unused;
}

/* Sends BURST with pthread_sigqueue to a new thread, or with sigqueue to the process, under
 * RLIMIT_SIGPENDING `limit` (0: as it is). */
static void queue_burst(bool to_thread, rlim_t limit)
{
    struct rlimit saved, low;
    getrlimit(RLIMIT_SIGPENDING, &saved);
    low = saved;
    if (limit != 0)
        low.rlim_cur = limit;
    atomic_store(&burst_handled, 0);
    pthread_t t;
    if (to_thread) {
        pthread_barrier_init(&burst_step, NULL, 2);
        pthread_create(&t, NULL, burst_target, NULL);
        pthread_barrier_wait(&burst_step);
    }
    setrlimit(RLIMIT_SIGPENDING, &low);
    int accepted = 0, other = 0;
    union sigval value = { .sival_int = 0 };
    for (int i = 0; i < BURST; i++) {
        int err = to_thread ? pthread_sigqueue(t, SIGRTMIN + 1, value)
                            : sigqueue(getpid(), SIGRTMIN + 1, value) == 0 ? 0 : errno;
        accepted += err == 0;
        other += err != 0 && err != EAGAIN;
    }
    setrlimit(RLIMIT_SIGPENDING, &saved);
    sigset_t rt = only(SIGRTMIN + 1);
    if (to_thread) {
        pthread_barrier_wait(&burst_step);
        pthread_join(t, NULL);
    } else {
        pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
        pthread_sigmask(SIG_BLOCK, &rt, NULL);
    }
    char limit_name[32] = "as it is";
    if (limit != 0)
        snprintf(limit_name, sizeof limit_name, "%d", (int)limit);
    printf("%d real-time signals by %s, RLIMIT_SIGPENDING %s: each call 0 or EAGAIN: %s; at most the "
           "limit accepted: %s; as many handled: %s\n",
           BURST, to_thread ? "pthread_sigqueue to a thread blocking them" : "sigqueue to the process, all blocking them",
           limit_name,
           other == 0 ? "yes" : "no", (rlim_t)accepted <= low.rlim_cur ? "yes" : "no",
           burst_handled == accepted ? "yes" : "no");
}

static void queue_full(void)
{
    handle(SIGRTMIN + 1, on_burst);
    sigset_t rt = only(SIGRTMIN + 1);
    pthread_sigmask(SIG_BLOCK, &rt, NULL);
    for (int to_thread = 1; to_thread >= 0; to_thread--) {
        queue_burst(to_thread, 0);
        queue_burst(to_thread, LOW_LIMIT);
    }
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
}

/* --- only with the argument kernel-burst: BURST real-time signals that the kernel queued
 * (sent through it, as from another process) for a thread that accepts them and waits in a
 * read meanwhile; how many the kernel accepted and how many ran. Natively every accepted one
 * runs. Under coop on one hub with neither preemption nor handoff, the sender keeps the hub
 * while they come, so coop's queue fills: the rest lose their siginfo and run one handler
 * while pending, and coop says so (test_thread_signals checks). --- */

static int burst_pipe[2];

static void *burst_reader(void *unused)
{
    sigset_t rt = only(SIGRTMIN + 2);
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
    pthread_barrier_wait(&burst_step);
    char c;
    if (read(burst_pipe[0], &c, 1) != 1)        /* SA_RESTART: the handlers run inside it */
        exit(1);
    return unused;
}

/* Installs fn (or, with SA_SIGINFO, info_fn) for SIGRTMIN + 2 and blocks it in the caller,
 * for the threads it makes to inherit. */
static sigset_t rt2_installed_and_blocked(void (*fn)(int), void (*info_fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (flags & SA_SIGINFO)
        sa.sa_sigaction = info_fn;
    else
        sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigaction(SIGRTMIN + 2, &sa, NULL);
    sigset_t rt = only(SIGRTMIN + 2);
    pthread_sigmask(SIG_BLOCK, &rt, NULL);
    return rt;
}

static void kernel_burst(void)
{
    rt2_installed_and_blocked(on_burst, NULL, SA_RESTART);
    if (pipe(burst_pipe) != 0)
        exit(1);
    pthread_barrier_init(&burst_step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, burst_reader, NULL);
    pthread_barrier_wait(&burst_step);
    siginfo_t info = { .si_signo = SIGRTMIN + 2, .si_code = SI_QUEUE, .si_pid = getpid(), .si_uid = getuid() };
    int accepted = 0;
    for (int i = 0; i < BURST; i++)
        accepted += syscall(SYS_rt_sigqueueinfo, getpid(), SIGRTMIN + 2, &info) == 0;
    if (write(burst_pipe[1], "x", 1) != 1)
        exit(1);
    pthread_join(t, NULL);
    printf("kernel-burst: accepted %d, handled %d\n", accepted, (int)burst_handled);
}

/* --- 17. a handler run in sigwait (for a signal its set leaves out) that jumps out with
 * siglongjmp ends the wait: the set's signal, unblocked later, runs its handler; the wait
 * leaves no signalfd open. SIGUSR2 may land before sigwait or in it, the lines are the same
 * (under coop on one hub, main runs only once the thread waits) --- */

static sigjmp_buf waiting_at;
static volatile sig_atomic_t usr1_after_jump;

static void on_usr2_leave(int sig)
{
    (void)sig;
    siglongjmp(waiting_at, 1);
}

static void on_usr1_after_jump(int sig)
{
    (void)sig;
    usr1_after_jump++;
}

/* Only signalfds: the runtime may open fds of its own meanwhile (a hub's). */
static int open_signalfds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; dir != NULL && (e = readdir(dir)) != NULL;) {
        char link[64] = "";
        if (readlinkat(dirfd(dir), e->d_name, link, sizeof link - 1) > 0 && strcmp(link, "anon_inode:[signalfd]") == 0)
            n++;
    }
    if (dir != NULL)
        closedir(dir);
    return n;
}

static void *jump_out_of_sigwait_thread(void *unused)
{
    sigset_t usr1 = only(SIGUSR1), usr2 = only(SIGUSR2);
    if (sigsetjmp(waiting_at, 1) == 0) {
        pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
        pthread_barrier_wait(&step);
        int sig = 0;
        sigwait(&usr1, &sig);
        printf("sigwait returned %d, not jumped out of\n", sig);
    }
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    pthread_kill(pthread_self(), SIGUSR1);
    printf("after siglongjmp out of sigwait's handler: SIGUSR2 %s; SIGUSR1 sent to it ran its handler %d time(s)\n",
           blocked_here(SIGUSR2), (int)usr1_after_jump);
    return unused;
}

/* Blocks `both` (the thread's mask too, saved by its sigsetjmp), runs `thread` until it waits,
 * sends it SIGUSR2, whose handler jumps out, and says whether a signalfd was left open. */
static void jump_round(void *(*thread)(void *), sigset_t both)
{
    pthread_sigmask(SIG_BLOCK, &both, NULL);
    pthread_barrier_init(&step, NULL, 2);
    int signalfds = open_signalfds();
    pthread_t t;
    pthread_create(&t, NULL, thread, NULL);
    pthread_barrier_wait(&step);
    pthread_kill(t, SIGUSR2);
    pthread_join(t, NULL);
    printf("then the process had %s signalfds open\n", open_signalfds() == signalfds ? "as many" : "more");
    pthread_sigmask(SIG_UNBLOCK, &both, NULL);
}

static void jump_out_of_sigwait(void)
{
    handle(SIGUSR1, on_usr1_after_jump);
    handle(SIGUSR2, on_usr2_leave);
    sigset_t both = only(SIGUSR1);
    sigaddset(&both, SIGUSR2);
    jump_round(jump_out_of_sigwait_thread, both);
}

/* --- 18. real-time signals that a thread queues to the process, while only another takes
 * them, arrive in the order they were sent (the kernel's queue is FIFO) --- */

/* Many: a kick that ran the next one's handler before this one's blocked it (run_handler)
 * broke the order 8 to 85 times in 100,000 signals on two hubs. */
#define ORDERED 100000

static int order_next;                  /* the value the next signal must carry */
static _Atomic int order_broken;
static sem_t order_arrived, order_done;

static void on_ordered(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)context;
    if (info->si_value.sival_int != order_next++)
        order_broken++;
    sem_post(&order_arrived);
}

static void *order_taker(void *unused)
{
    sigset_t rt = only(SIGRTMIN + 2);
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
    while (sem_wait(&order_done) != 0)
        ;
    return unused;
}

static void *order_sender(void *unused)
{
    for (int i = 0; i < ORDERED; i++)
        while (sigqueue(getpid(), SIGRTMIN + 2, (union sigval){ .sival_int = i }) != 0)
            sched_yield();                  /* EAGAIN: a full queue, try again */
    return unused;
}

static void arrive_in_order(void)
{
    sigset_t rt = rt2_installed_and_blocked(NULL, on_ordered, SA_SIGINFO);
    sem_init(&order_arrived, 0, 0);
    sem_init(&order_done, 0, 0);
    pthread_t taker, sender;
    pthread_create(&taker, NULL, order_taker, NULL);
    pthread_create(&sender, NULL, order_sender, NULL);
    for (int i = 0; i < ORDERED; i++)
        while (sem_wait(&order_arrived) != 0)
            ;
    pthread_join(sender, NULL);
    sem_post(&order_done);
    pthread_join(taker, NULL);
    printf("%d real-time signals a thread queued to the process arrived in the order sent: %s\n", ORDERED,
           order_broken == 0 ? "yes" : "no");
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
}

#define FILL 1000

/* Counts SIGRTMIN + 1's handlers from 0 (burst_handled) and blocks it, with the rest of set,
 * in the caller (the threads it makes inherit it); set gets SIGRTMIN + 1. */
static void count_rt1_blocked(sigset_t *set)
{
    handle(SIGRTMIN + 1, on_burst);
    atomic_store(&burst_handled, 0);
    sigaddset(set, SIGRTMIN + 1);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Queues SIGRTMIN + 1 to the process, which blocks it, until the queue is full or FILL are
 * queued: how many were. */
static int fill_queue(void)
{
    int accepted = 0;
    while (accepted < FILL && sigqueue(getpid(), SIGRTMIN + 1, (union sigval){ .sival_int = 0 }) == 0)
        accepted++;
    return accepted;
}

/* --- 19. a SIGCHLD from the kernel while real-time signals queued to the process fill what
 * may be queued comes with its siginfo: the kernel always gives a standard signal it sends
 * one --- */

static volatile sig_atomic_t chld_ran, chld_code, chld_status;
static volatile pid_t chld_pid;

static void on_chld(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)context;
    chld_code = info->si_code;
    chld_status = info->si_status;
    chld_pid = info->si_pid;
    chld_ran = 1;
}

static void sigchld_when_full(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t both = only(SIGCHLD), open;
    count_rt1_blocked(&both);
    int accepted = fill_queue();
    pid_t child = fork();
    if (child == 0)
        _exit(7);
    pthread_sigmask(SIG_BLOCK, NULL, &open);
    sigdelset(&open, SIGCHLD);
    while (!chld_ran)
        sigsuspend(&open);
    waitpid(child, NULL, 0);
    pthread_sigmask(SIG_UNBLOCK, &both, NULL);
    handle(SIGCHLD, SIG_DFL);
    printf("SIGCHLD from the kernel while real-time signals filled the queue: CLD_EXITED, from the child, "
           "status 7: %s; the real-time ones all ran: %s\n",
           chld_code == CLD_EXITED && chld_pid == child && chld_status == 7 ? "yes" : "no",
           burst_handled == accepted ? "yes" : "no");
}

/* --- 20. RLIMIT_SIGPENDING raised while the real-time signals queued fill it: one more is
 * accepted --- */

static void limit_raised_when_full(void)
{
    sigset_t rt;
    sigemptyset(&rt);
    count_rt1_blocked(&rt);
    struct rlimit saved, low;
    getrlimit(RLIMIT_SIGPENDING, &saved);
    low = saved;
    low.rlim_cur = LOW_LIMIT;
    setrlimit(RLIMIT_SIGPENDING, &low);
    int accepted = fill_queue();
    bool full = errno == EAGAIN;
    setrlimit(RLIMIT_SIGPENDING, &saved);
    bool more = sigqueue(getpid(), SIGRTMIN + 1, (union sigval){ .sival_int = 0 }) == 0;
    accepted += more;
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
    printf("real-time signals queued to the process until EAGAIN at RLIMIT_SIGPENDING %d: %s; once it was "
           "raised, one more accepted: %s; all ran: %s\n",
           LOW_LIMIT, full ? "yes" : "no", more ? "yes" : "no", burst_handled == accepted ? "yes" : "no");
}

/* --- 21. a forked child starts with nothing pending (POSIX), though its parent had a signal
 * pending for the process, one for the forking thread and real-time ones filling the queue
 * for another thread; the child may queue real-time signals of its own --- */

#define CHILD_QUEUED 16

static volatile sig_atomic_t usr_ran;
static void on_usr_counted(int sig) { (void)sig; usr_ran++; }

static void *holder(void *unused)
{
    pthread_barrier_wait(&burst_step);          /* blocking SIGRTMIN + 1, as main does */
    pthread_barrier_wait(&burst_step);          /* the child has exited */
    sigset_t rt = only(SIGRTMIN + 1);
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
    return unused;
}

static void fork_leaves_them(void)
{
    handle(SIGUSR1, on_usr_counted);
    handle(SIGUSR2, on_usr_counted);
    sigset_t set = only(SIGUSR1);
    sigaddset(&set, SIGUSR2);
    count_rt1_blocked(&set);
    usr_ran = 0;
    pthread_barrier_init(&burst_step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    pthread_barrier_wait(&burst_step);
    int held = 0;
    while (held < FILL && pthread_sigqueue(t, SIGRTMIN + 1, (union sigval){ .sival_int = 0 }) == 0)
        held++;
    kill(getpid(), SIGUSR1);
    raise(SIGUSR2);
    pid_t child = fork();
    if (child == 0) {
        bool none = !pending_here(SIGUSR1) && !pending_here(SIGUSR2) && !pending_here(SIGRTMIN + 1);
        atomic_store(&burst_handled, 0);
        int queued = 0;
        for (int i = 0; i < CHILD_QUEUED; i++)
            queued += sigqueue(getpid(), SIGRTMIN + 1, (union sigval){ .sival_int = i }) == 0;
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        printf("in a forked child: nothing pending: %s; %d real-time signals it queued itself accepted: %s; on "
               "unblocking, only their handlers ran: %s\n",
               none ? "yes" : "no", CHILD_QUEUED, queued == CHILD_QUEUED ? "yes" : "no",
               burst_handled == queued && usr_ran == 0 ? "yes" : "no");
        _exit(0);
    }
    waitpid(child, NULL, 0);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    pthread_barrier_wait(&burst_step);
    pthread_join(t, NULL);
    printf("in the parent: SIGUSR1 and SIGUSR2 ran: %s; the other thread's real-time signals all ran: %s\n",
           usr_ran == 2 ? "yes" : "no", burst_handled == held ? "yes" : "no");
}

/* --- 22. a real-time signal the kernel delivered (as from another process) while the
 * real-time signals queued to the process fill what may be queued: its handler still runs, on
 * the one thread that accepts it (the sender got 0) --- */

static sem_t late_ran;
static pthread_t late_in;

static void on_late(int sig)
{
    (void)sig;
    late_in = pthread_self();
    sem_post(&late_ran);
}

static void *late_taker(void *unused)
{
    sigset_t late = only(SIGRTMIN + 3);
    pthread_sigmask(SIG_UNBLOCK, &late, NULL);
    pthread_barrier_wait(&burst_step);
    while (sem_wait(&late_ran) != 0)            /* EINTR: the handler ran, and posted */
        ;
    return unused;
}

static void kernel_signal_when_full(void)
{
    handle(SIGRTMIN + 3, on_late);
    sigset_t both = only(SIGRTMIN + 3);
    count_rt1_blocked(&both);
    sem_init(&late_ran, 0, 0);
    int accepted = fill_queue();
    pthread_barrier_init(&burst_step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, late_taker, NULL);
    pthread_barrier_wait(&burst_step);
    siginfo_t info = { .si_signo = SIGRTMIN + 3, .si_code = SI_QUEUE, .si_pid = getpid(), .si_uid = getuid() };
    bool sent = syscall(SYS_rt_sigqueueinfo, getpid(), SIGRTMIN + 3, &info) == 0;
    pthread_join(t, NULL);
    pthread_sigmask(SIG_UNBLOCK, &both, NULL);
    printf("a real-time signal the kernel delivered while the queue was full: sent: %s; its handler ran on the "
           "thread that accepts it: %s; the queued ones all ran: %s\n",
           sent ? "yes" : "no", pthread_equal(late_in, t) ? "yes" : "no", burst_handled == accepted ? "yes" : "no");
}

/* --- 25. as 17, but sigwait runs in a handler on an alternate signal stack (SA_ONSTACK)
 * that lies above the thread's stack, and the handler that jumps out lands on the thread's
 * stack: the wait ends all the same (the stacks differ, their addresses say nothing). Under
 * coop on several hubs the sigwait may go on on another hub's OS thread, whose alternate
 * stack is not this one: FORTIFY's siglongjmp must not take the jump for one into a dead
 * frame --- */

static volatile sig_atomic_t rt_after_jump;

static void on_rt_after_jump(int sig)
{
    (void)sig;
    rt_after_jump++;
}

static void on_usr1_sigwait(int sig)
{
    (void)sig;
    sigset_t rt = only(SIGRTMIN);
    pthread_barrier_wait(&step);
    int taken = 0;
    sigwait(&rt, &taken);
    printf("sigwait on the alternate stack returned %d, not jumped out of\n", taken);
}

/* 64 KiB above the caller's stack where that is free, else anywhere. */
static void *alternate_stack_above(void)
{
    uintptr_t here = (uintptr_t)__builtin_frame_address(0) & ~(uintptr_t)0xfff;
    void *alt = MAP_FAILED;
    for (uintptr_t gap = 16 << 20; alt == MAP_FAILED && gap <= 1u << 30; gap <<= 1)
        alt = mmap((void *)(here + gap), 1 << 16, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (alt == MAP_FAILED)
        alt = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return alt;
}

static void *jump_from_alternate_stack_thread(void *unused)
{
    stack_t alt = { .ss_sp = alternate_stack_above(), .ss_size = 1 << 16 }, old;
    sigaltstack(&alt, &old);
    sigset_t rt = only(SIGRTMIN), usr2 = only(SIGUSR2);
    if (sigsetjmp(waiting_at, 1) == 0) {
        pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
        syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1);   /* the kernel's: on the alternate stack */
        printf("SIGUSR1's handler returned, not jumped out of\n");
    }
    pthread_sigmask(SIG_UNBLOCK, &rt, NULL);
    pthread_kill(pthread_self(), SIGRTMIN);
    printf("after siglongjmp from an alternate stack's sigwait: SIGRTMIN sent to it ran its handler %d time(s)\n",
           (int)rt_after_jump);
    sigaltstack(&old, NULL);    /* the mapping stays: under coop, the hub's thread may keep it */
    return unused;
}

static void jump_from_alternate_stack(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_sigwait;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    handle(SIGUSR2, on_usr2_leave);
    handle(SIGRTMIN, on_rt_after_jump);
    sigset_t both = only(SIGRTMIN);
    sigaddset(&both, SIGUSR2);
    jump_round(jump_from_alternate_stack_thread, both);
    handle(SIGUSR1, SIG_DFL);
    handle(SIGRTMIN, SIG_DFL);
}

/* --- 26. a thread canceled in sigwait, or that calls pthread_exit in a handler run in
 * sigwait, leaves no signalfd open; the handler of a signal outside the set runs in sigwait,
 * which goes on (glibc's sigwait retries after EINTR) and takes the set's signal after it.
 * Either signal or the cancellation may land before sigwait or in it: the lines are the same
 * (under coop on one hub, main runs only once the thread waits) --- */

static volatile sig_atomic_t usr2_in_sigwait;
/* Not on the stack of the thread that is unwound: AddressSanitizer would find what its
 * frame poisoned there in the next thread to have that stack (glibc's unwinding ends with a
 * jump it does not see). */
static sigset_t usr1_only, usr2_only;
static int usr1_taken;

static void on_usr2_exit(int sig)
{
    (void)sig;
    pthread_exit((void *)42);
}

static void on_usr2_count(int sig)
{
    (void)sig;
    usr2_in_sigwait++;
}

static void *sigwait_usr1(void *unused)
{
    pthread_sigmask(SIG_UNBLOCK, &usr2_only, NULL);
    pthread_barrier_wait(&step);
    sigwait(&usr1_only, &usr1_taken);
    printf("sigwait returned %s; SIGUSR2's handler ran %d time(s)\n", usr1_taken == SIGUSR1 ? "SIGUSR1" : "another",
           (int)usr2_in_sigwait);
    return unused;
}

/* Runs sigwait_usr1 on a thread that main cancels or sends `first`, then SIGUSR1: how it ended. */
static const char *end_sigwait(bool cancel, int first)
{
    pthread_barrier_init(&step, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, sigwait_usr1, NULL);
    pthread_barrier_wait(&step);
    if (cancel)
        pthread_cancel(t);
    else
        pthread_kill(t, first);
    pthread_kill(t, SIGUSR1);
    void *result;
    pthread_join(t, &result);
    return result == PTHREAD_CANCELED ? "canceled" : result == (void *)42 ? "exited with 42" : "returned";
}

static void leave_sigwait(void)
{
    usr1_only = only(SIGUSR1);
    usr2_only = only(SIGUSR2);
    sigset_t both = only(SIGUSR1);
    sigaddset(&both, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &both, NULL);
    int signalfds = open_signalfds();
    printf("a thread canceled in sigwait: %s\n", end_sigwait(true, 0));
    handle(SIGUSR2, on_usr2_exit);
    printf("a thread whose handler run in sigwait calls pthread_exit: %s\n", end_sigwait(false, SIGUSR2));
    printf("then the process had %s signalfds open\n", open_signalfds() == signalfds ? "as many" : "more");
    handle(SIGUSR2, on_usr2_count);
    printf("a thread whose sigwait ran a handler: %s\n", end_sigwait(false, SIGUSR2));
    pthread_sigmask(SIG_UNBLOCK, &both, NULL);
}

/* --- 27. as 17, but the handler leaves sigwait with setcontext, to a context getcontext
 * saved before it --- */

static ucontext_t before_sigwait;
static volatile sig_atomic_t left_by_setcontext;

static void on_usr2_setcontext(int sig)
{
    (void)sig;
    left_by_setcontext = 1;
    setcontext(&before_sigwait);
}

static void *setcontext_out_of_sigwait_thread(void *unused)
{
    sigset_t usr1 = only(SIGUSR1), usr2 = only(SIGUSR2);
    getcontext(&before_sigwait);
    if (!left_by_setcontext) {
        pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
        pthread_barrier_wait(&step);
        int sig = 0;
        sigwait(&usr1, &sig);
        printf("sigwait returned %d, not left\n", sig);
    }
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    pthread_kill(pthread_self(), SIGUSR1);
    printf("after setcontext out of sigwait's handler: SIGUSR1 sent to it ran its handler %d time(s)\n",
           (int)usr1_after_jump);
    return unused;
}

static void setcontext_out_of_sigwait(void)
{
    handle(SIGUSR1, on_usr1_after_jump);
    handle(SIGUSR2, on_usr2_setcontext);
    usr1_after_jump = 0;
    sigset_t both = only(SIGUSR1);
    sigaddset(&both, SIGUSR2);
    jump_round(setcontext_out_of_sigwait_thread, both);
}

/* --- 28. a process signal that only a thread in a raw read accepts ends that read, with
 * EINTR (its handler has no SA_RESTART), RAW_ROUNDS times. Under coop the reader sits in the
 * kernel on an OS thread of its own, while the kernel gives the signal to the main thread's,
 * which main's mask does not block there: the reader's thread must be interrupted from that
 * one. If the signal came before the read, the byte its handler writes ends the read. --- */

#define RAW_ROUNDS 50

static int raw_pipe[2];
static atomic_int raw_round_reading = -1;   /* the round whose read is about to start */
static atomic_bool raw_stop;                /* main gave up: the reader stops after its read */
static volatile sig_atomic_t raw_ran;
static pthread_t raw_reader_thread;
static sem_t raw_read_over;

static void on_raw_signal(int sig)
{
    (void)sig;
    if (pthread_equal(pthread_self(), raw_reader_thread))
        raw_ran++;
    char byte = 0;
    (void)!write(raw_pipe[1], &byte, 1);
}

static void *raw_reader(void *ended)
{
    for (int round = 0; round < RAW_ROUNDS && !atomic_load(&raw_stop); round++) {
        /* Under coop, off the OS thread the kernel prefers for a process signal, if it can. */
        for (int tries = 0; tries < 1000 && syscall(SYS_gettid) == getpid(); tries++)
            sched_yield();
        atomic_store(&raw_round_reading, round);
        char bytes[4];
        long r = syscall(SYS_read, raw_pipe[0], bytes, 1);
        if (r == 1 || (r < 0 && errno == EINTR))
            (*(int *)ended)++;
        int left = 0;       /* the handler's byte, when the read ended with EINTR */
        if (ioctl(raw_pipe[0], FIONREAD, &left) == 0 && left > 0)
            (void)!read(raw_pipe[0], bytes, (size_t)left < sizeof bytes ? (size_t)left : sizeof bytes);
        sem_post(&raw_read_over);
    }
    return NULL;
}

/* RAW_ROUNDS rounds of: the reader in a raw read, main sending sig to the process. The
 * reader accepts the signals of `set`, which main blocks meanwhile. Returns the rounds whose
 * read ended within 10 s (fewer: the reader was let go); *ended counts the reads that ended. */
static int raw_rounds(int sig, sigset_t set, int *ended)
{
    if (pipe(raw_pipe) != 0 || sem_init(&raw_read_over, 0, 0) != 0)
        abort();
    atomic_store(&raw_round_reading, -1);
    atomic_store(&raw_stop, false);
    *ended = 0;
    int rounds = 0;
    pthread_create(&raw_reader_thread, NULL, raw_reader, ended);
    pthread_sigmask(SIG_BLOCK, &set, NULL);     /* after the reader inherited the mask */
    for (; rounds < RAW_ROUNDS; rounds++) {
        while (atomic_load(&raw_round_reading) != rounds)
            sched_yield();
        kill(getpid(), sig);
        struct timespec limit;
        clock_gettime(CLOCK_REALTIME, &limit);
        limit.tv_sec += 10;          /* only turns a reader never interrupted into a FAIL line */
        if (sem_timedwait(&raw_read_over, &limit) != 0)
            break;
    }
    if (rounds < RAW_ROUNDS) {      /* let the reader go */
        atomic_store(&raw_stop, true);
        char byte = 0;
        (void)!write(raw_pipe[1], &byte, 1);
    }
    pthread_join(raw_reader_thread, NULL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    close(raw_pipe[0]);
    close(raw_pipe[1]);
    sem_destroy(&raw_read_over);
    return rounds;
}

static void raw_call_interrupted(void)
{
    handle(SIGUSR1, on_raw_signal);
    raw_ran = 0;
    int ended;
    int rounds = raw_rounds(SIGUSR1, only(SIGUSR1), &ended);
    printf("a process signal only a thread in a raw read accepts, %d times: its handler ran there %d time(s), "
           "the read ended %d time(s)%s\n", RAW_ROUNDS, (int)raw_ran, ended,
           rounds < RAW_ROUNDS ? " (FAIL: a read not ended within 10 s)" : "");
}

/* --- 29. a signal sent while a handler's mask blocks it runs as that handler returns: the
 * reader of 28 takes SIGTERM (SA_RESTART, SIGINT in its sa_mask), whose handler sends SIGINT
 * to the process; SIGINT's handler runs on the reader as SIGTERM's returns, and its byte
 * ends the restarted read. Under coop nothing else of the process is on the reader's OS
 * thread to take it there. --- */

static volatile sig_atomic_t term_then_int_ran;

static void on_term_send_int(int sig)
{
    (void)sig;
    if (pthread_equal(pthread_self(), raw_reader_thread))
        term_then_int_ran++;
    syscall(SYS_kill, getpid(), SIGINT);     /* the kernel's: another OS thread takes it */
}

static void sent_under_a_handlers_mask(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term_send_int;
    sa.sa_flags = SA_RESTART;
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGTERM, &sa, NULL);
    handle(SIGINT, on_raw_signal);
    raw_ran = 0;
    sigset_t both = only(SIGTERM);
    sigaddset(&both, SIGINT);
    int ended;
    int rounds = raw_rounds(SIGTERM, both, &ended);
    printf("SIGINT sent by a SIGTERM handler whose mask blocks it, %d times: SIGTERM's handler ran on the reader "
           "%d time(s), SIGINT's %d time(s), the read ended %d time(s)%s\n", RAW_ROUNDS, (int)term_then_int_ran,
           (int)raw_ran, ended, rounds < RAW_ROUNDS ? " (FAIL: a read not ended within 10 s)" : "");
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
}

/* --- 30. workers that block nothing compute; SIGTERM from another process runs its handler
 * in main, whose poll it ends: the kernel gives a process signal to the thread the pid
 * names first (a server's accept loop counts on it) --- */

#define TERM_ROUNDS 20

static int term_wake[2];     /* the spinners' write: main's poll ends even if the signal missed it */

static void *term_spinner(void *unused)
{
    pthread_barrier_wait(&workers_ready);
    while (terms == 0)
        ;
    if (write(term_wake[1], "x", 1) != 1)
        abort();
    return unused;
}

static void sigterm_ends_mains_poll(void)
{
    handle(SIGTERM, on_term);
    if (pipe2(term_wake, O_NONBLOCK) != 0)
        abort();
    int in_main = 0;
    for (int round = 0; round < TERM_ROUNDS; round++) {
        terms = 0;
        pthread_t w[2];
        pthread_barrier_init(&workers_ready, NULL, 3);
        for (int i = 0; i < 2; i++)
            pthread_create(&w[i], NULL, term_spinner, NULL);
        pthread_barrier_wait(&workers_ready);
        pid_t child = sigterm_from_child();
        struct pollfd p = { .fd = term_wake[0], .events = POLLIN };
        while (terms == 0 && poll(&p, 1, -1) == 0)
            ;
        for (int i = 0; i < 2; i++)
            pthread_join(w[i], NULL);
        char drain[8];
        while (read(term_wake[0], drain, sizeof drain) > 0)
            ;
        waitpid(child, NULL, 0);
        pthread_barrier_destroy(&workers_ready);
        in_main += pthread_equal(term_thread, pthread_self()) != 0;
    }
    close(term_wake[0]);
    close(term_wake[1]);
    signal(SIGTERM, SIG_DFL);
    printf("workers compute and block nothing: SIGTERM from another process ran its handler in main %d time(s) "
           "of %d\n", in_main, TERM_ROUNDS);
}

/* --- 31. SIGPIPE, which the kernel sends the thread that wrote, runs its handler there,
 * though main takes it too --- */

static pthread_t pipe_thread;

static void on_pipe(int sig)
{
    (void)sig;
    pipe_thread = pthread_self();
}

static void *write_to_closed_pipe(void *unused)
{
    int p[2];
    if (pipe(p) != 0)
        abort();
    close(p[0]);
    if (write(p[1], "x", 1) != -1 || errno != EPIPE)
        abort();
    close(p[1]);
    return unused;
}

static void sigpipe_on_the_writer(void)
{
    handle(SIGPIPE, on_pipe);
    pthread_t writer;
    pthread_create(&writer, NULL, write_to_closed_pipe, NULL);
    pthread_join(writer, NULL);
    signal(SIGPIPE, SIG_DFL);
    printf("SIGPIPE from a thread's write ran its handler on that thread: %s\n",
           pthread_equal(pipe_thread, writer) ? "yes" : "no");
}

/* A chain of signals, each sent by the handler before to its own thread (a raw tgkill, as a
 * timer's next tick comes): pending while that handler runs, it is delivered after the
 * handler's frame has gone (sigreturn), not nested in it. Nested, link after link, the
 * frames would fill the stack (stress-ng's timer stressor died so under coop). */
enum { LINKS = 20000 };
static volatile sig_atomic_t links, link_depth, links_nested;

static void send_to_own_thread(int sig) { syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig); }

static void on_link(int sig)
{
    if (++link_depth > 1)
        links_nested++;
    if (++links < LINKS)
        send_to_own_thread(sig);
    link_depth--;
}

/* A handler's own unblock opens the thread's mask at once: the next link runs nested. */
static void on_link_unblocked(int sig)
{
    if (++link_depth > 1)
        links_nested++;
    if (++links < 3) {
        sigset_t own = only(sig);
        pthread_sigmask(SIG_UNBLOCK, &own, NULL);
        send_to_own_thread(sig);
    }
    link_depth--;
}

/* A system call that neither coop nor the signal steps make: test_thread_signals counts what
 * strace shows between two of them. */
static void mark_for_strace(void) { syscall(SYS_getppid); }

static void chain_of_signals(void)
{
    int sig = SIGRTMIN + 5;
    handle(sig, on_link);
    mark_for_strace();
    send_to_own_thread(sig);
    while (links < LINKS)
        ;
    mark_for_strace();
    printf("a chain of %d signals, each sent by the handler before: %d handlers ran nested in another\n",
           (int)links, (int)links_nested);
    send_to_own_thread(sig);               /* the mask is open again: its handler runs at once */
    printf("one more, sent from outside a handler, handled before tgkill returned: %s\n",
           links == LINKS + 1 ? "yes" : "no");
    handle(sig, on_link_unblocked);
    links = link_depth = links_nested = 0;
    send_to_own_thread(sig);
    printf("handlers that unblock their signal before sending the next: %d ran, %d nested, as natively\n",
           (int)links, (int)links_nested);
    signal(sig, SIG_DFL);
}

/* Signals from the kernel between switches: each raw tgkill's handler runs on main, which then
 * yields to a thread that yields back. Under coop on one hub, every signal is followed by a
 * switch (for the strace count of test_thread_signals). */
enum { BETWEEN_SWITCHES = 5000 };
static volatile sig_atomic_t between_switches_handled;
static atomic_bool switches_over;

static void on_between_switches(int sig)
{
    (void)sig;
    between_switches_handled++;
}

static void *yield_until_over(void *unused)
{
    (void)unused;
    while (!atomic_load(&switches_over))
        sched_yield();
    return NULL;
}

static void signals_between_switches(void)
{
    handle(SIGUSR1, on_between_switches);
    pthread_t other;
    if (pthread_create(&other, NULL, yield_until_over, NULL) != 0)
        abort();
    mark_for_strace();
    for (int i = 0; i < BETWEEN_SWITCHES; i++) {
        send_to_own_thread(SIGUSR1);
        sched_yield();
    }
    mark_for_strace();
    atomic_store(&switches_over, true);
    pthread_join(other, NULL);
    printf("%d signals between switches, %d handled\n", BETWEEN_SWITCHES, (int)between_switches_handled);
    signal(SIGUSR1, SIG_DFL);
}

/* A garbage collector's stop of the world (Boehm GC's, Mono's): a suspend signal whose
 * handler acknowledges and then waits in sigsuspend for the restart signal, blocked until
 * then by the handler's mask, and acknowledges again. The threads compute meanwhile, in
 * loops that make no call, each with a signal stack of its own (Mono's, Ruby's, Rust's
 * threads have one) or not, and main, which stops them, waits for each acknowledgement:
 * it must get a CPU while they compute. The handlers run on the signal stack (SA_ONSTACK)
 * or not: with it, a thread without a stack of its own runs them on its own stack, and
 * each waits there while the others are stopped too. */
#define STOP_ROUNDS 20
static sem_t stop_acks, computing;
/* Under coop with AddressSanitizer, a handler that waits while its thread was in ASan's malloc
 * lets the other greenlets of that OS thread into its allocator's cache, which is the OS
 * thread's (two threads were given one signal stack): there the threads are stopped only once
 * they compute (core/sanitizer.c). */
#if defined(__SANITIZE_ADDRESS__)
static const bool stop_once_computing = true;
#else
static const bool stop_once_computing = false;
#endif
static volatile sig_atomic_t stop_computing;
static __thread volatile sig_atomic_t restarted;

static int suspend_signal(void) { return SIGRTMIN + 3; }
static int restart_signal(void) { return SIGRTMIN + 4; }

static void on_restart(int sig)
{
    (void)sig;
    restarted = 1;
}

/* Acknowledges, waits in sigsuspend for *flag, which restart's handler sets (restart and
 * nested, if not 0, let in), and acknowledges again. */
static void stop_here(volatile sig_atomic_t *flag, int restart, int nested)
{
    sigset_t until;
    sigfillset(&until);
    sigdelset(&until, restart);
    if (nested != 0)
        sigdelset(&until, nested);
    *flag = 0;
    sem_post(&stop_acks);
    while (!*flag)
        sigsuspend(&until);
    sem_post(&stop_acks);
}

static void on_suspend(int sig)
{
    (void)sig;
    stop_here(&restarted, restart_signal(), 0);
}

/* A thread that computes until told to stop; with a signal stack of its own when `stacked`
 * is not NULL (it points to with_stack). */
static const bool with_stack = true;

static void *compute_until_told(void *stacked)
{
    stack_t own = { .ss_sp = NULL, .ss_size = SIGSTKSZ * 4 }, before;
    if (stacked != NULL && ((own.ss_sp = malloc(own.ss_size)) == NULL || sigaltstack(&own, &before) != 0))
        abort();
    if (stop_once_computing)
        sem_post(&computing);
    volatile unsigned long spins = 0;
    while (!stop_computing)
        spins++;
    if (stacked != NULL) {     /* the one it replaced back (a sanitizer's frees its own at exit) */
        sigaltstack(&before, NULL);
        free(own.ss_sp);
    }
    return NULL;
}

/* Sends each of `threads` every signal of `steps` in turn, `rounds` times, waiting for all
 * to acknowledge each step. */
static void stop_and_restart(const pthread_t *t, int threads, const int *steps, int n_steps, int rounds)
{
    for (int round = 0; round < rounds; round++)
        for (int step = 0; step < n_steps; step++) {
            for (int i = 0; i < threads; i++)
                pthread_kill(t[i], steps[step]);
            for (int i = 0; i < threads; i++)
                sem_wait(&stop_acks);
        }
}

/* `threads` threads (at most 16) running body(arg) until told, stopped and restarted `rounds`
 * times (under AddressSanitizer, once they compute). */
static void stop_threads(int threads, void *(*body)(void *), void *arg, const int *steps, int n_steps, int rounds)
{
    pthread_t t[16];
    sem_init(&stop_acks, 0, 0);
    sem_init(&computing, 0, 0);
    stop_computing = 0;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, body, arg);
    for (int i = 0; i < threads && stop_once_computing; i++)
        sem_wait(&computing);
    stop_and_restart(t, threads, steps, n_steps, rounds);
    stop_computing = 1;
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
}

/* `threads` computing threads, with signal stacks of their own or not. */
static void stop_computing_threads(int threads, bool stacked, const int *steps, int n_steps)
{
    stop_threads(threads, compute_until_told, stacked ? (void *)&with_stack : NULL, steps, n_steps, STOP_ROUNDS);
}

static void handle_stop_signal(int sig, void (*fn)(int), bool onstack, int left_open)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART | (onstack ? SA_ONSTACK : 0);
    sigfillset(&sa.sa_mask);
    if (left_open != 0)
        sigdelset(&sa.sa_mask, left_open);
    sigaction(sig, &sa, NULL);
}

/* A second stop nested in the first: its handler runs inside the first's wait, and waits in
 * turn, both on signal stacks, until main restarts the inner one, then the outer one. */
static __thread volatile sig_atomic_t restarted_inner;

static int inner_suspend_signal(void) { return SIGRTMIN + 5; }
static int inner_restart_signal(void) { return SIGRTMIN + 6; }

static void on_inner_restart(int sig)
{
    (void)sig;
    restarted_inner = 1;
}

static void on_inner_suspend(int sig)
{
    (void)sig;
    stop_here(&restarted_inner, inner_restart_signal(), 0);
}

static void on_outer_suspend(int sig)
{
    (void)sig;
    stop_here(&restarted, restart_signal(), inner_suspend_signal());
}

static void world_stop_nested(int threads)
{
    handle_stop_signal(restart_signal(), on_restart, true, 0);
    handle_stop_signal(inner_restart_signal(), on_inner_restart, true, 0);
    handle_stop_signal(inner_suspend_signal(), on_inner_suspend, true, 0);
    handle_stop_signal(suspend_signal(), on_outer_suspend, true, inner_suspend_signal());
    int steps[] = { suspend_signal(), inner_suspend_signal(), inner_restart_signal(), restart_signal() };
    stop_computing_threads(threads, false, steps, 4);
    printf("world-stop: %d computing threads stopped twice, the second stop inside the first, %d times\n", threads,
           STOP_ROUNDS);
}

/* `threads` computing threads, with signal stacks or not, whose handlers run on a signal
 * stack or not. */
static void world_stop(int threads, bool stacked, bool onstack)
{
    handle_stop_signal(suspend_signal(), on_suspend, onstack, 0);
    handle_stop_signal(restart_signal(), on_restart, onstack, 0);
    int steps[] = { suspend_signal(), restart_signal() };
    stop_computing_threads(threads, stacked, steps, 2);
    printf("world-stop: %d computing threads %s signal stacks of their own stopped and restarted %d times, "
           "handlers%s on the signal stack\n", threads, stacked ? "with" : "without", STOP_ROUNDS, onstack ? "" : " not");
}

/* Threads that set up a signal stack of their own and take it down again, in a loop, while
 * stopped and restarted as above, handlers on the signal stack: a stop that comes as
 * sigaltstack returns runs on the new stack, and waits there. Under coop the kernel's stack
 * and coop's record of it were changed apart, and a signal taken between the two ran while
 * coop still took the thread's kept stack for the installed one: the thread went on with
 * the waiting handler's stack installed, and the next signal's frame overwrote it. */
static void *change_signal_stack_until_told(void *unused)
{
    (void)unused;
    stack_t own = { .ss_sp = malloc(SIGSTKSZ * 4), .ss_size = SIGSTKSZ * 4 }, off = { .ss_flags = SS_DISABLE };
    if (own.ss_sp == NULL)
        abort();
    if (stop_once_computing)
        sem_post(&computing);
    while (!stop_computing)
        if (sigaltstack(&own, NULL) != 0 || sigaltstack(&off, NULL) != 0)
            abort();
    free(own.ss_sp);
    return NULL;
}

static void signal_stack_changes(int threads, int rounds)
{
    handle_stop_signal(suspend_signal(), on_suspend, true, 0);
    handle_stop_signal(restart_signal(), on_restart, true, 0);
    int steps[] = { suspend_signal(), restart_signal() };
    stop_threads(threads, change_signal_stack_until_told, NULL, steps, 2, rounds);
    printf("signal-stack-changes: %d threads setting up and taking down signal stacks stopped and restarted %d times\n",
           threads, rounds);
}

/* Mono's stop of the world beside computing threads: the threads it stops wait (its thread
 * pool's workers), while threads it leaves alone compute, each with a signal stack of its
 * own, as many as hubs, started just before. Under coop a waiting thread's handler runs
 * once a hub, at its next iteration, ends the wait; every hub's thread went on to compute
 * instead, and no hub came (a C# program hung on one hub and on two). The waiters block the
 * restart signal but in sigsuspend, so that the last one, which tells them to end, cannot
 * come between their test and their wait. */
static sem_t waiting;

static void *wait_until_told(void *unused)
{
    (void)unused;
    sigset_t restart, open;
    sigemptyset(&restart);
    sigaddset(&restart, restart_signal());
    pthread_sigmask(SIG_BLOCK, &restart, &open);
    sem_post(&waiting);
    while (!stop_computing)
        sigsuspend(&open);
    return NULL;
}

static void world_stop_waiters(int computers, int waiters)
{
    handle_stop_signal(suspend_signal(), on_suspend, false, 0);
    handle_stop_signal(restart_signal(), on_restart, false, 0);
    pthread_t c[16], w[16];
    sem_init(&stop_acks, 0, 0);
    sem_init(&waiting, 0, 0);
    stop_computing = 0;
    for (int i = 0; i < waiters; i++)
        pthread_create(&w[i], NULL, wait_until_told, NULL);
    for (int i = 0; i < waiters; i++)
        sem_wait(&waiting);
    for (int i = 0; i < computers; i++)
        pthread_create(&c[i], NULL, compute_until_told, (void *)&with_stack);
    int steps[] = { suspend_signal(), restart_signal() };
    stop_and_restart(w, waiters, steps, 2, STOP_ROUNDS);
    stop_computing = 1;
    for (int i = 0; i < waiters; i++) {
        pthread_kill(w[i], restart_signal());
        pthread_join(w[i], NULL);
    }
    for (int i = 0; i < computers; i++)
        pthread_join(c[i], NULL);
    printf("world-stop: %d waiting threads stopped and restarted %d times beside %d computing with signal stacks "
           "of their own\n", waiters, STOP_ROUNDS, computers);
}

/* A handler's own signal is blocked while it runs, however many signals come: a storm of
 * SIGUSR2 from another process while this thread raises SIGUSR1 in a loop, both handled on
 * a signal stack of its own (SA_ONSTACK, an empty sa_mask), another thread yielding beside
 * it. Natively the handlers run at most two deep on that stack (SIGUSR2's inside SIGUSR1's).
 * Under coop a signal delivered just as the kernel entered another handler gave the thread
 * the hubs' mask at its sigreturn, and the next SIGUSR2 ran inside the first's frame: ever
 * deeper, until the stack overflowed (SIGSEGV). Depths are measured against one handler's,
 * for a SIGUSR2 the other process sends before the storm. */
#define STORM_STACK_SIZE (64 * 1024)
static char *storm_stack_top;
static volatile long storm_deepest;
static volatile sig_atomic_t storm_handled;
static volatile bool storm_over;

static void on_storm(int sig)
{
    (void)sig;
    char here;
    long depth = storm_stack_top - &here;     /* a raise under coop runs its handler in place */
    if (depth > storm_deepest && depth < STORM_STACK_SIZE)
        storm_deepest = depth;
    storm_handled++;
}

static void *yield_until_storm_over(void *unused)
{
    (void)unused;
    while (!storm_over)
        sched_yield();
    return NULL;
}

static void storm_on_signal_stack(int rounds)
{
    stack_t own = { .ss_sp = malloc(STORM_STACK_SIZE), .ss_size = STORM_STACK_SIZE }, before;
    int go[2];
    if (own.ss_sp == NULL || sigaltstack(&own, &before) != 0 || pipe(go) != 0)
        abort();
    storm_stack_top = (char *)own.ss_sp + STORM_STACK_SIZE;
    struct sigaction sa = { .sa_handler = on_storm, .sa_flags = SA_ONSTACK | SA_RESTART };   /* empty sa_mask */
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    pid_t parent = getpid(), child = fork();
    if (child == 0) {
        char byte;
        if (kill(parent, SIGUSR2) != 0 || read(go[0], &byte, 1) != 1)
            _exit(1);
        for (;;)
            if (kill(parent, SIGUSR2) != 0)
                _exit(0);
    }
    while (storm_handled == 0)      /* computing: a wait under coop would run the handler in place */
        ;
    long one = storm_deepest;
    pthread_t yielder;
    pthread_create(&yielder, NULL, yield_until_storm_over, NULL);
    if (write(go[1], "", 1) != 1)
        abort();
    for (int i = 0; i < rounds; i++)
        raise(SIGUSR1);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    storm_over = true;
    pthread_join(yielder, NULL);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    sigaltstack(&before, NULL);
    free(own.ss_sp);
    close(go[0]);
    close(go[1]);
    if (storm_deepest * 2 <= one * 5)
        printf("storm: the handlers ran at most two deep on the signal stack\n");
    else
        printf("storm: the handlers ran %.1f times one handler's depth on the signal stack\n",
               (double)storm_deepest / one);
}

/* PostgreSQL's latches: every thread blocks SIGURG and a signalfd takes it, whether the
 * process sends it to itself or another process does. */
static void *wait_for_byte(void *fd)
{
    char byte;
    if (read(*(int *)fd, &byte, 1) != 1)
        abort();
    return NULL;
}

static void sigurg_through_signalfd(void)
{
    sigset_t urg = only(SIGURG), old;
    pthread_sigmask(SIG_BLOCK, &urg, &old);
    int p[2];
    pthread_t other;           /* blocks it too: its mask is main's */
    if (pipe(p) != 0 || pthread_create(&other, NULL, wait_for_byte, &p[0]) != 0)
        abort();
    int sfd = signalfd(-1, &urg, SFD_CLOEXEC);
    if (sfd < 0)
        abort();
    /* Computing beside another thread: coop's slice ends, but it may not send its SIGURG. */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do
        clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000000000L + now.tv_nsec - start.tv_nsec < 50000000L);
    struct pollfd none = { .fd = sfd, .events = POLLIN };
    printf("50 ms of computing with SIGURG blocked left the signalfd empty: %s\n",
           poll(&none, 1, 0) == 0 ? "yes" : "no");
    for (int from_child = 0; from_child < 2; from_child++) {
        if (!from_child) {
            kill(getpid(), SIGURG);
        } else {
            pid_t child = fork();
            if (child == 0) {
                kill(getppid(), SIGURG);
                _exit(0);
            }
            waitpid(child, NULL, 0);
        }
        struct pollfd ready = { .fd = sfd, .events = POLLIN };
        struct signalfd_siginfo si;
        bool read_it = poll(&ready, 1, 10000) == 1 && read(sfd, &si, sizeof si) == sizeof si
                       && si.ssi_signo == SIGURG;
        printf("SIGURG that every thread blocks, sent by %s, read from a signalfd: %s\n",
               from_child ? "another process" : "the process", read_it ? "yes" : "no");
    }
    if (write(p[1], "x", 1) != 1)
        abort();
    pthread_join(other, NULL);
    close(sfd);
    close(p[0]);
    close(p[1]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Go's runtime dies of a fatal signal with raw system calls, unseen by libc and coop: its
 * handler unblocks the signal and raises it at its own thread (its handler, again, forwards
 * it to the default action), then sets SIG_DFL and raises it once more without unblocking it
 * again. Its threads were made with every signal blocked (its cgo start). A second SIGTERM,
 * sent while the handler blocks it (timeout(1) sends two: to its child, then to its group),
 * is pending when it unblocks. The process must end by the signal, not by the _exit after. */
static volatile sig_atomic_t forwarding;
static int to_sender, from_sender;

static void unblock_and_raise_raw(int sig)
{
    uint64_t set = 1ULL << (sig - 1);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, NULL, sizeof set);
    send_to_own_thread(sig);
}

static void on_fatal_as_go(int sig)
{
    if (forwarding) {
        signal(sig, SIG_DFL);
        unblock_and_raise_raw(sig);
        _exit(3);
    }
    forwarding = 1;
    char byte = 0;
    if (syscall(SYS_write, to_sender, &byte, 1) != 1 || syscall(SYS_read, from_sender, &byte, 1) != 1)
        _exit(4);
    unblock_and_raise_raw(sig);
    signal(sig, SIG_DFL);
    send_to_own_thread(sig);
    _exit(2);
}

static _Noreturn void *pause_for_ever(void *unused)
{
    (void)unused;
    for (;;)
        pause();
}

static void die_as_go_does(void)
{
    struct sigaction sa = { .sa_handler = on_fatal_as_go };
    sigfillset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t other;
    if (pthread_create(&other, NULL, pause_for_ever, NULL) != 0)
        abort();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int asks[2], sent[2];
    if (pipe(asks) != 0 || pipe(sent) != 0)
        abort();
    to_sender = asks[1];
    from_sender = sent[0];
    if (fork() == 0) {     /* the sender: one SIGTERM, and one more when the handler asks */
        char byte;
        close(asks[1]);     /* should either side die first, the other reads the end */
        close(sent[0]);
        kill(getppid(), SIGTERM);
        if (read(asks[0], &byte, 1) != 1)
            _exit(1);
        kill(getppid(), SIGTERM);
        _exit(write(sent[1], &byte, 1) == 1 ? 0 : 1);
    }
    close(asks[0]);
    close(sent[1]);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "kernel-burst") == 0) {
        kernel_burst();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "chain") == 0) {
        chain_of_signals();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "between-switches") == 0) {
        signals_between_switches();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "sigurg") == 0) {
        sigurg_through_signalfd();
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "storm") == 0) {
        storm_on_signal_stack(atoi(argv[2]));
        return 0;
    }
    if (argc > 3 && strcmp(argv[1], "world-stop") == 0) {
        int hubs = atoi(argv[2]), more = atoi(argv[3]);
        hubs = hubs < 15 ? hubs : 15;      /* hubs + 1 threads at most 16 */
        more = more < 16 ? more : 16;
        world_stop(hubs, false, false);
        world_stop(hubs, true, false);
        world_stop(hubs + 1, true, true);
        world_stop(more, false, true);
        world_stop_nested(more);
        world_stop_waiters(hubs, 3);
        return 0;
    }
    if (argc > 3 && strcmp(argv[1], "signal-stack-changes") == 0) {
        int threads = atoi(argv[2]);
        signal_stack_changes(threads < 16 ? threads : 16, atoi(argv[3]));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "die-as-go") == 0)
        die_as_go_does();
    sigterm_reaches_main();
    pthread_kill_each();
    pending_per_thread();
    inherit_mask_not_pending();
    sigwait_directed();
    ppoll_mask();
    process_pending();
    mask_storm();
    kill_as_it_exits();
    handled_before_the_call();
    ready_wait_leaves_it_pending();
    directed_and_lent();
    sigwait_leaves_the_other();
    jump_out_of_a_wait();
    jump_out_of_kernel_handlers();
    queue_full();
    jump_out_of_sigwait();
    arrive_in_order();
    sigchld_when_full();
    limit_raised_when_full();
    fork_leaves_them();
    kernel_signal_when_full();
    jump_from_alternate_stack();
    leave_sigwait();
    setcontext_out_of_sigwait();
    raw_call_interrupted();
    sent_under_a_handlers_mask();
    sigterm_ends_mains_poll();
    sigpipe_on_the_writer();
    chain_of_signals();
    signals_between_switches();
    sigurg_through_signalfd();
    return 0;
}
