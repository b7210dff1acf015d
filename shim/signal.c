/*
 * Family signal: handlers keep running as installed, but coop slips a trampoline in
 * front of each, because a handler must end a greenlet's cooperative wait the way it
 * would end a blocking system call: with EINTR, or a restart when it was installed with
 * SA_RESTART. The kernel hands a process-wide signal to the main thread when it can, so
 * the main greenlet's wait is the one interrupted; pthread_kill names its own target.
 * SIGURG is also coop's preemption signal (core/preempt.c): the trampoline offers it to
 * coop first, and while the program leaves it at SIG_DFL or SIG_IGN coop's handler stays.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

/* What the program installed, as sigaction reports it back. */
static struct sigaction installed[NSIG];
static bool trampolined[NSIG];
/* The greenlet a pthread_kill aimed at, per signal. */
static struct coop_greenlet *_Atomic target[NSIG];

static void trampoline(int sig, siginfo_t *info, void *context)
{
    const struct sigaction *a = &installed[sig];
    if (sig == SIGSEGV && coop_stack_overflowed(info, context)) {
        REAL(sigaction)(SIGSEGV, &(struct sigaction){ .sa_handler = SIG_DFL }, NULL);
        return;     /* the fault repeats with the default action: death by SIGSEGV */
    }

    if (sig == COOP_PREEMPT_SIGNAL)
        coop_preempt_on_signal(info, context);
    int flags = a->sa_flags;
    if (flags & SA_SIGINFO)
        a->sa_sigaction(sig, info, context);
    else
        a->sa_handler(sig);
    if (flags & SA_RESETHAND) {
        installed[sig].sa_handler = SIG_DFL;
        trampolined[sig] = false;
    }
    coop_interrupt(atomic_exchange(&target[sig], NULL), flags & SA_RESTART);
}

void shim_signal_target(struct coop_greenlet *g, int sig)
{
    if (sig > 0 && sig < NSIG)
        atomic_store(&target[sig], g);
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (!shim_patched[FAM_signal] || sig <= 0 || sig >= NSIG)
        return REAL(sigaction)(sig, act, old);
    struct sigaction previous = installed[sig];
    bool was_trampolined = trampolined[sig];
    int r;
    if (act != NULL && act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN) {
        struct sigaction mine = *act;
        mine.sa_sigaction = trampoline;
        mine.sa_flags |= SA_SIGINFO | (sig == SIGSEGV ? SA_ONSTACK : 0);
        installed[sig] = *act;     /* before the kernel can call the trampoline */
        coop_note_signal_handler();

        r = REAL(sigaction)(sig, &mine, old);
        trampolined[sig] = r == 0;
    } else if (act != NULL && sig == COOP_PREEMPT_SIGNAL && coop_preempt_claim_signal()) {
        installed[sig] = *act;      /* ignored, as coop's handler ignores all but its own */
        trampolined[sig] = false;
        r = old != NULL ? REAL(sigaction)(sig, NULL, old) : 0;
    } else {
        r = REAL(sigaction)(sig, act, old);
        if (r == 0 && act != NULL)
            trampolined[sig] = false;
        if (act != NULL && sig == COOP_PREEMPT_SIGNAL)
            installed[sig] = *act;  /* what sigaction reports once coop's handler stands in */
    }
    if (r != 0)
        installed[sig] = previous;
    else if (old != NULL && (was_trampolined || coop_is_overflow_handler((void *)old->sa_sigaction)
                             || coop_is_preempt_handler((void *)old->sa_sigaction)))
        *old = previous;     /* the program sees its own handlers, never coop's */
    return r;
}

/* The run-info dump: the handler only asks the hubs; each prints its own greenlets. */
int shim_dump_signal;

static void dump_handler(int sig)
{
    (void)sig;
    coop_request_dump();
}

void shim_signal_init(void)
{
    if (shim_dump_signal == 0)
        return;
    struct sigaction sa = { .sa_handler = dump_handler, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    REAL(sigaction)(shim_dump_signal, &sa, NULL);
}

/* glibc's signal() has BSD semantics: the handler stays, and calls restart. */
EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    struct sigaction act = { .sa_handler = handler, .sa_flags = SA_RESTART }, old;
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, sig);
    if (sigaction(sig, &act, &old) != 0)
        return SIG_ERR;
    return old.sa_handler;
}

EXPORT sighandler_t bsd_signal(int sig, sighandler_t handler) { return signal(sig, handler); }

/*
 * Waiting for signals. sigwait and its kin take a pending signal of a blocked set; here
 * the real sigtimedwait takes it, with its siginfo, and never waits: a signalfd for the
 * set (never read) says when to look again, so only the caller waits. The signals stay
 * blocked as the program set them, in the OS thread's mask that its greenlets share.
 */
static const struct timespec no_wait;

/* A signalfd that becomes readable when a signal of set is pending, or -1. */
static int signal_notifier(const sigset_t *set)
{
    int fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd >= 0)
        shim_fd_created(fd, FD_POLLABLE, true);
    return fd;
}

static void notifier_close(int fd)
{
    if (fd < 0)
        return;
    int saved = errno;
    shim_fd_closed(fd);
    REAL(close)(fd);
    errno = saved;
}

/* sigtimedwait until deadline; restart: whether a handler that ran meanwhile lets the
 * wait go on (sigwait) or ends it with EINTR (sigwaitinfo, sigtimedwait: never restarted). */
static int wait_signal(const sigset_t *set, siginfo_t *info, int64_t deadline, bool restart)
{
    int fd = -1, sig;
    for (;;) {
        sig = REAL(sigtimedwait)(set, info, &no_wait);
        if (sig > 0 || errno != EAGAIN || coop_now() >= deadline)
            break;
        if (fd < 0 && (fd = signal_notifier(set)) < 0) {      /* out of fds: the real wait */
            struct timespec left = shim_remaining(deadline);
            sig = REAL(sigtimedwait)(set, info, deadline == COOP_NO_DEADLINE ? NULL : &left);
            break;
        }
        int r = coop_wait_fd(fd, COOP_READ, deadline);
        if ((r == EINTR || r == COOP_RESTART) && !restart) {
            errno = EINTR;
            sig = -1;
            break;
        }
        if (r == EBADF) {            /* the program closed it under the wait: another one */
            fd = -1;
        } else if (r != 0 && r != ETIMEDOUT && r != EINTR && r != COOP_RESTART) {
            struct timespec left = shim_remaining(deadline);   /* cannot wait: the real wait */
            sig = REAL(sigtimedwait)(set, info, deadline == COOP_NO_DEADLINE ? NULL : &left);
            break;
        }
    }
    notifier_close(fd);
    return sig;
}

static bool valid_timeout(const struct timespec *ts)
{
    return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000;
}

EXPORT int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout)
{
    if (shim_cooperative(FAM_signal) == NULL
        || (timeout != NULL && (!valid_timeout(timeout) || (timeout->tv_sec == 0 && timeout->tv_nsec == 0))))
        return REAL(sigtimedwait)(set, info, timeout);
    return wait_signal(set, info, shim_deadline_after(timeout), false);
}

EXPORT int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
    if (shim_cooperative(FAM_signal) == NULL)
        return REAL(sigwaitinfo)(set, info);
    return wait_signal(set, info, COOP_NO_DEADLINE, false);
}

/* glibc's sigwait never fails with EINTR, and returns an error number. */
EXPORT int sigwait(const sigset_t *set, int *sig)
{
    if (shim_cooperative(FAM_signal) == NULL)
        return REAL(sigwait)(set, sig);
    siginfo_t info;
    int r = wait_signal(set, &info, COOP_NO_DEADLINE, true);
    if (r < 0)
        return errno;
    *sig = r;
    return 0;
}

/* Ignored signals vanish when unblocked; a blocked one stays pending whatever its action. */
static bool ignored(int sig)
{
    struct sigaction sa;
    if (REAL(sigaction)(sig, NULL, &sa) != 0)
        return true;
    if (coop_is_preempt_handler((void *)sa.sa_sigaction))
        sa = installed[sig];         /* coop's stands in for the program's SIG_DFL or SIG_IGN */
    if (sa.sa_handler == SIG_IGN)
        return true;
    return sa.sa_handler == SIG_DFL
           && (sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH);
}

/*
 * sigsuspend(mask) unblocks, for the time of the wait, the signals of the thread's mask
 * that mask leaves out. The OS thread's mask is every greenlet's, so it is left alone
 * while the caller waits: a signalfd watches those signals, and once one is pending
 * the real sigsuspend runs, which delivers it and returns at once. Handlers of signals
 * that were never blocked end the wait through the trampoline, as for any other wait.
 */
EXPORT int sigsuspend(const sigset_t *mask)
{
    struct coop_greenlet *g = shim_cooperative(FAM_signal);
    if (g == NULL)
        return REAL(sigsuspend)(mask);
    sigset_t blocked, freed;
    pthread_sigmask(SIG_BLOCK, NULL, &blocked);
    sigemptyset(&freed);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&blocked, sig) == 1 && sigismember(mask, sig) == 0 && sig != SIGKILL && sig != SIGSTOP)
            sigaddset(&freed, sig);
    int fd = sigisemptyset(&freed) ? -1 : signal_notifier(&freed);
    if (fd < 0 && !sigisemptyset(&freed))
        return REAL(sigsuspend)(mask);     /* out of fds: the real wait */
    for (;;) {
        sigset_t pending;
        sigpending(&pending);
        sigandset(&pending, &pending, &freed);
        bool deliver = false;
        for (int sig = 1; sig < NSIG; sig++) {
            if (sigismember(&pending, sig) != 1)
                continue;
            if (ignored(sig)) {         /* discarded, as unblocking it would */
                sigset_t one;
                sigemptyset(&one);
                sigaddset(&one, sig);
                REAL(sigtimedwait)(&one, NULL, &no_wait);
            } else {
                deliver = true;
            }
        }
        if (deliver) {
            /* The handler's interruption is aimed at the caller, which is running. */
            for (int sig = 1; sig < NSIG; sig++)
                if (sigismember(&freed, sig) == 1)
                    shim_signal_target(g, sig);
            REAL(sigsuspend)(mask);
            for (int sig = 1; sig < NSIG; sig++) {
                struct coop_greenlet *mine = g;    /* unless a pthread_kill aimed it elsewhere */
                if (sigismember(&freed, sig) == 1)
                    atomic_compare_exchange_strong(&target[sig], &mine, NULL);
            }
            break;
        }
        int r = fd >= 0 ? coop_wait_fd(fd, COOP_READ, COOP_NO_DEADLINE) : coop_sleep_until(COOP_NO_DEADLINE);
        if (r == EINTR || r == COOP_RESTART)
            break;
        if (r == EBADF && (fd = signal_notifier(&freed)) >= 0)
            continue;                /* the program closed it under the wait: another one */
        if (r != 0) {
            REAL(sigsuspend)(mask);   /* cannot wait: the real wait */
            break;
        }
    }
    notifier_close(fd);
    errno = EINTR;
    return -1;
}

EXPORT int pause(void)
{
    if (shim_cooperative(FAM_signal) == NULL)
        return REAL(pause)();
    while (coop_sleep_until(COOP_NO_DEADLINE) == 0)
        ;
    errno = EINTR;
    return -1;
}

/* X/Open's sigpause takes one signal out of the mask; the BSD one (the plain symbol,
 * for old programs) replaces the first 32 signals' mask. */
EXPORT int __xpg_sigpause(int sig)
{
    sigset_t set;
    if (pthread_sigmask(SIG_BLOCK, NULL, &set) != 0 || sigdelset(&set, sig) != 0)
        return -1;
    return sigsuspend(&set);
}

/* <signal.h> renames sigpause to __xpg_sigpause: this one takes its name by hand. */
int bsd_sigpause(int mask) __asm__("sigpause");
EXPORT int bsd_sigpause(int mask)
{
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig < NSIG && sig <= (int)sizeof mask * 8; sig++)
        if (mask & (1u << (sig - 1)))
            sigaddset(&set, sig);
    return sigsuspend(&set);
}
