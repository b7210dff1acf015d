/*
 * Family signal: handlers keep running as installed, but coop slips a trampoline in
 * front of each, because a handler must end a greenlet's cooperative wait the way it
 * would end a blocking system call: with EINTR, or a restart when it was installed with
 * SA_RESTART. The kernel hands a process-wide signal to the main thread when it can, so
 * the main greenlet's wait is the one interrupted; pthread_kill names its own target.
 */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

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
        r = REAL(sigaction)(sig, &mine, old);
        trampolined[sig] = r == 0;
    } else {
        r = REAL(sigaction)(sig, act, old);
        if (r == 0 && act != NULL)
            trampolined[sig] = false;
    }
    if (r != 0)
        installed[sig] = previous;
    else if (old != NULL && (was_trampolined || coop_is_overflow_handler((void *)old->sa_sigaction)))
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
