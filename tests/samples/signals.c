/*
 * signals: waits for signals, and signals that interrupt waits, while a ticker thread
 * counts 5 ms sleeps to show that the other threads keep running (each wait lasts 100 ms or
 * more, and must see it tick at least once).
 *
 *   sigwait      a thread takes SIGUSR1 and SIGUSR2 (sent to the process) with sigwait,
 *                and a queued SIGRTMIN with its value with sigwaitinfo; sigtimedwait
 *                times out with EAGAIN
 *   read EINTR   a handler without SA_RESTART interrupts a read on a pipe (EINTR)
 *                (sent with pthread_sigqueue)
 *   read restart with SA_RESTART the read goes on and returns the data sent later
 *   own signal   a thread that sent itself a signal (pthread_kill, pthread_sigqueue) ran its
 *                handler then: its next read waits for the data, uninterrupted
 *   sigsuspend   the main thread waits with SIGALRM blocked except in sigsuspend
 *   pause        the main thread waits in pause() until a handler runs
 *
 * Each step prints one line; timings go to stderr. Exit status 0 when all are right.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>

static _Atomic bool stop_ticker;
static _Atomic long ticks;
static _Atomic int failures;
static volatile sig_atomic_t handled;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "signals: check failed: " __VA_ARGS__);                      \
            fputc('\n', stderr);                                                         \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static void *ticker(void *arg)
{
    (void)arg;
    while (!stop_ticker) {
        sleep_ms(5);
        ticks++;
    }
    return NULL;
}

static void on_signal(int sig) { (void)sig; handled++; }

static void install(int sig, int flags)
{
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = flags };
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0)
        die_errno("sigaction");
}

/* Sends sig to a thread (with pthread_sigqueue when queued) or to the process after
 * delay_ms; with until, again every delay_ms until *until is set: a wait that must end by a
 * signal gets one while it waits, however late it gets to waiting. */
struct shot { pthread_t target; int sig, delay_ms; bool process; _Atomic bool *until; bool queued; };

static void *shooter(void *arg)
{
    struct shot *s = arg;
    do {
        sleep_ms((unsigned)s->delay_ms);
        if (s->process)
            kill(getpid(), s->sig);
        else if (s->queued)
            pthread_sigqueue(s->target, s->sig, (union sigval){ .sival_int = 0 });
        else
            pthread_kill(s->target, s->sig);
    } while (s->until != NULL && !*s->until);
    return NULL;
}

static pthread_t fire(struct shot *s)
{
    pthread_t t;
    if (pthread_create(&t, NULL, shooter, s) != 0)
        die("pthread_create");
    return t;
}

/* Ticks counted while a step waited: one proves the ticker ran (a rate would measure the
 * machine's load). */
static void report_ticks(const char *what, long before, uint64_t t0)
{
    long got = ticks - before, ms = (long)((now_ns() - t0) / 1000000);
    fprintf(stderr, "%s: %ld ms, %ld ticks meanwhile\n", what, ms, got);
    CHECK(got >= 1, "%s: the ticker stood still (%ld ticks in %ld ms)", what, got, ms);
}

/* --- sigwait --- */
static void *waiter(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    errno = EDOM;       /* a signal taken leaves errno as it was */
    CHECK(sigwait(set, &sig) == 0 && sig == SIGUSR1 && errno == EDOM, "first sigwait: %d, errno %d", sig, errno);
    CHECK(sigwait(set, &sig) == 0 && sig == SIGUSR2, "second sigwait: %d", sig);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    sig = sigwaitinfo(set, &info);
    CHECK(sig == SIGRTMIN && info.si_value.sival_int == 77 && info.si_code == SI_QUEUE && info.si_pid == getpid(),
          "sigwaitinfo: %d value %d", sig, info.si_value.sival_int);
    return NULL;
}

static void step_sigwait(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
    long before = ticks;
    uint64_t t0 = now_ns();
    pthread_t w;
    pthread_create(&w, NULL, waiter, &set);
    sleep_ms(100);
    kill(getpid(), SIGUSR1);
    sleep_ms(100);
    kill(getpid(), SIGUSR2);
    sleep_ms(100);
    sigqueue(getpid(), SIGRTMIN, (union sigval){ .sival_int = 77 });
    pthread_join(w, NULL);
    report_ticks("sigwait", before, t0);

    struct timespec timeout = { 0, 100 * 1000000 };
    t0 = now_ns();
    errno = 0;
    CHECK(sigtimedwait(&set, NULL, &timeout) == -1 && errno == EAGAIN, "sigtimedwait: errno %d", errno);
    CHECK(now_ns() - t0 >= 100 * 1000000ull, "sigtimedwait returned early");
    printf("sigwait: SIGUSR1, SIGUSR2 and SIGRTMIN with its value received; sigtimedwait timed out\n");
}

/* --- a handler and a read --- */
struct reading { int fd; ssize_t n; int err; char c; _Atomic bool done; };

static void *reader(void *arg)
{
    struct reading *r = arg;
    errno = 0;
    r->n = read(r->fd, &r->c, 1);
    r->err = errno;
    r->done = true;
    return NULL;
}

static void step_read(bool restart)
{
    int p[2];
    if (pipe(p) != 0)
        die_errno("pipe");
    install(SIGHUP, restart ? SA_RESTART : 0);
    handled = 0;
    struct reading r = { .fd = p[0] };
    long before = ticks;
    uint64_t t0 = now_ns();
    pthread_t t;
    pthread_create(&t, NULL, reader, &r);
    /* Without SA_RESTART only a signal ends the read: sent until it has. */
    struct shot s = { t, SIGHUP, 100, false, restart ? NULL : &r.done, !restart };
    pthread_t st = fire(&s);
    if (restart) {
        sleep_ms(250);
        if (write(p[1], "x", 1) != 1)
            die_errno("write");
    }
    pthread_join(st, NULL);    /* first: it may signal the reader until it stops */
    pthread_join(t, NULL);
    report_ticks(restart ? "read restart" : "read EINTR", before, t0);
    if (restart) {
        CHECK(r.n == 1 && r.c == 'x' && handled == 1, "restarted read: %zd, errno %d, handled %d", r.n, r.err, (int)handled);
        printf("read restart: the handler ran and the read went on to return the data\n");
    } else {
        CHECK(r.n == -1 && r.err == EINTR && handled >= 1, "interrupted read: %zd, errno %d", r.n, r.err);
        printf("read EINTR: the handler ran and the read failed with EINTR\n");
    }
    close(p[0]);
    close(p[1]);
}

static void *write_later(void *arg)
{
    sleep_ms(100);
    if (write(*(int *)arg, "x", 1) != 1)
        die_errno("write");
    return NULL;
}

static void step_own_signal(void)
{
    int p[2];
    if (pipe(p) != 0)
        die_errno("pipe");
    install(SIGHUP, 0);
    handled = 0;
    for (int queued = 0; queued <= 1; queued++) {
        if (queued)
            pthread_sigqueue(pthread_self(), SIGHUP, (union sigval){ .sival_int = 0 });
        else
            pthread_kill(pthread_self(), SIGHUP);
        CHECK(handled == queued + 1, "own signal: handled %d after sending", (int)handled);
        pthread_t w;
        pthread_create(&w, NULL, write_later, &p[1]);
        char c = 0;
        errno = 0;
        ssize_t n = read(p[0], &c, 1);
        CHECK(n == 1 && c == 'x', "read after an own signal (%s): %zd, errno %d", queued ? "pthread_sigqueue" : "pthread_kill", n, errno);
        pthread_join(w, NULL);
    }
    printf("own signal: the handler ran as it was sent; the next read waited for the data\n");
    close(p[0]);
    close(p[1]);
}

/* --- sigsuspend, pause --- */
static void step_sigsuspend(void)
{
    sigset_t unblocked;     /* SIGALRM is blocked in every thread but inside sigsuspend */
    pthread_sigmask(SIG_BLOCK, NULL, &unblocked);
    sigdelset(&unblocked, SIGALRM);
    install(SIGALRM, 0);
    handled = 0;
    long before = ticks;
    uint64_t t0 = now_ns();
    struct shot s = { 0, SIGALRM, 100, true, NULL, false };
    pthread_t st = fire(&s);
    int r = 0;
    while (!handled)
        r = sigsuspend(&unblocked);
    int err = errno;
    pthread_join(st, NULL);
    report_ticks("sigsuspend", before, t0);
    CHECK(r == -1 && err == EINTR && handled == 1, "sigsuspend: %d errno %d", r, err);
    CHECK(now_ns() - t0 >= 100 * 1000000ull, "sigsuspend returned early");
    printf("sigsuspend: returned with EINTR after the SIGALRM handler ran\n");
}

static void step_pause(void)
{
    install(SIGHUP, SA_RESTART);
    handled = 0;
    long before = ticks;
    uint64_t t0 = now_ns();
    _Atomic bool returned = false;
    struct shot s = { pthread_self(), SIGHUP, 100, false, &returned, false };
    pthread_t st = fire(&s);
    int r = pause();
    int err = errno;
    returned = true;
    pthread_join(st, NULL);
    report_ticks("pause", before, t0);
    CHECK(r == -1 && err == EINTR && handled >= 1, "pause: %d errno %d", r, err);
    printf("pause: returned with EINTR after the SIGHUP handler ran\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Blocked before any thread starts, so that every thread inherits the mask and the
     * process-wide signals wait for sigwait and sigsuspend. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    pthread_create(&t, NULL, ticker, NULL);
    step_sigwait();
    step_read(false);
    step_read(true);
    step_own_signal();
    step_sigsuspend();
    step_pause();
    stop_ticker = true;
    pthread_join(t, NULL);
    printf("failures=%d\n", failures);
    return failures == 0 ? 0 : 1;
}
