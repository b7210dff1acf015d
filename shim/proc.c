/*
 * Family proc: child processes. Creating one must not stop the hub, and waiting for one
 * must park only the caller.
 *
 * - fork: the child keeps only the forking greenlet, with a fresh loop (coop_fork_child),
 *   as POSIX keeps only the forking thread.
 * - vfork: a vfork child borrows its parent's memory and stops its OS thread until it has
 *   exec'd. With other greenlets that would stop them all, so vfork is fork then; a lone
 *   greenlet gets the real vfork (shells vfork every command they run; a fork costs each
 *   ~0.1 ms more), and its child's wrapper calls leave coop's state alone
 *   (shim_vfork_child).
 * - posix_spawn, posix_spawnp: glibc's clone(CLONE_VFORK) stops the calling OS thread
 *   until the child has exec'd, so the call runs on the threadpool, with the caller's
 *   signal mask given to the child in its attributes, since a pool thread has its own, and
 *   its CPU set and scheduling policy lent to the pool thread meanwhile (shim_sched_lend).
 * - wait, waitpid, wait3, wait4, waitid: the real call with WNOHANG, and between tries a
 *   wait on pidfds (pollable, readable once the process has ended) of the child asked
 *   for, or of every child for "any child" and process groups.
 * - system, popen: glibc's wait inside with its internal waitpid; both are written again
 *   over a child started without stopping the hub (below) and the cooperative waitpid.
 *   pclose needs no wrapper: glibc's pclose is fclose, and fclose of coop's popen stream
 *   calls the stream's own close function.
 * - execve and its kin: nothing to wait for, but the new program inherits what the kernel
 *   keeps for the calling OS thread, which coop keeps per greenlet: for the call, the thread
 *   takes the caller's signal mask and pending signals (signal.c) and its CPU affinity and
 *   scheduling policy (sched.c), and gets its own back if the call fails. That state is
 *   the signal and thread families', so this is done whatever COOP_PATCH says of this one.
 *   glibc's list forms and execvp call its execve inside, past the wrappers, so each form
 *   has one; the list forms gather their arguments into a vector, as glibc's do.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/sys.h"
#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

extern char **environ;

/* --- fork --- */
static void proc_fork_child(void);

/* The core renews the child's hub in a pthread_atfork handler, which also serves forks
 * made inside libc (daemon, forkpty); this resets the family's own state. */
EXPORT pid_t fork(void)
{
    pid_t pid = REAL(fork)();
    if (pid == 0)
        proc_fork_child();
    return pid;
}

__thread bool shim_vfork_child;

/* Whether vfork may share memory: no other greenlet could be stopped or see the child. */
__attribute__((visibility("hidden"), used)) bool shim_vfork_may_share(void)
{
    return coop_self() == NULL || coop_alone();
}

__attribute__((visibility("hidden"), used)) pid_t shim_vfork_as_fork(void) { return fork(); }

__attribute__((visibility("hidden"), used)) pid_t shim_vfork_failed(int err)
{
    errno = -err;
    return -1;
}

/*
 * vfork cannot be a C function that returns: the child would pop the frame its parent
 * returns through. As glibc's, it keeps the return address in a register across the
 * system call; the flag is set before it and cleared by the parent, which runs again only
 * once the child has exec'd or exited. Under a shadow stack (CET), which the child shares,
 * the child jumps back instead of returning, as glibc's does.
 */
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork, @function\n"
        "vfork:\n"
        "\tendbr64\n"
        "\tsubq $8, %rsp\n"
        "\tcall shim_vfork_may_share\n"
        "\taddq $8, %rsp\n"
        "\ttestb %al, %al\n"
        "\tjz shim_vfork_as_fork\n"
        "\tmovq shim_vfork_child@gottpoff(%rip), %rcx\n"
        "\tmovb $1, %fs:(%rcx)\n"
        "\tpopq %rdi\n"
        "\tmovl $58, %eax\n"            /* SYS_vfork */
        "\tsyscall\n"
        "\tpushq %rdi\n"
        "\ttestl %eax, %eax\n"
        "\tjz 1f\n"
        "\tmovq shim_vfork_child@gottpoff(%rip), %rcx\n"
        "\tmovb $0, %fs:(%rcx)\n"
        "\tcmpl $-4095, %eax\n"
        "\tjae 2f\n"
        "\tret\n"
        "1:\txorl %esi, %esi\n"
        "\trdsspq %rsi\n"
        "\ttestq %rsi, %rsi\n"
        "\tjz 3f\n"
        "\tpopq %rdi\n"
        "\tjmp *%rdi\n"
        "3:\tret\n"
        "2:\tmovl %eax, %edi\n"
        "\tjmp shim_vfork_failed\n"
        ".size vfork, .-vfork\n");

/* --- waiting for children --- */

/* An fd of coop's own, and so one the fd table and the hub must not know from before. */
static int private_fd(int fd)
{
    if (fd >= 0)
        shim_fd_created(fd, FD_POLLABLE, true);
    return fd;
}

static void private_close(int fd)
{
    shim_fd_closed(fd);
    REAL(close)(fd);
}

#define MAX_PIDFDS 64
/* How often "any child" waits look again, for children born while they wait. */
#define RESCAN_NS (50 * 1000000LL)
/* Stops and continues do not make a pidfd readable: those waits look this often. */
#define STOPS_POLL_NS (10 * 1000000LL)

/* Adds pidfds of every child of the process (children belong to the thread that made
 * them, so every thread's list is read) to fds; returns how many. */
static int children_pidfds(int *fds, int max)
{
    int n = 0;
    DIR *tasks = opendir("/proc/self/task");
    if (tasks == NULL)
        return 0;
    struct dirent *t;
    while ((t = readdir(tasks)) != NULL && n < max) {
        if (t->d_name[0] == '.')
            continue;
        char path[300], list[4096];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
        int fd = REAL(openat)(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
            continue;
        ssize_t len = REAL(read)(fd, list, sizeof list - 1);
        REAL(close)(fd);
        if (len <= 0)
            continue;
        list[len] = '\0';
        for (char *p = list, *end; n < max; p = end) {
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            int pfd = pidfd_open((pid_t)pid, 0);
            if (pfd >= 0)
                fds[n++] = private_fd(pfd);
        }
    }
    closedir(tasks);
    return n;
}

/* Waits until a child the call is about may have changed state: 0, or EINTR /
 * COOP_RESTART when a signal handler ran. */
static int wait_change(idtype_t idtype, id_t id, int options)
{
    int fds[MAX_PIDFDS], n = 0;
    int64_t deadline = COOP_NO_DEADLINE;
    if (options & (WSTOPPED | WCONTINUED))
        deadline = coop_now() + STOPS_POLL_NS;
    if (idtype == P_PIDFD) {
        fds[n++] = (int)id;
    } else if (idtype == P_PID) {
        int fd = pidfd_open((pid_t)id, 0);
        if (fd >= 0)
            fds[n++] = private_fd(fd);
    } else {
        n = children_pidfds(fds, MAX_PIDFDS);
        if (deadline == COOP_NO_DEADLINE || deadline > coop_now() + RESCAN_NS)
            deadline = coop_now() + RESCAN_NS;
    }
    int r;
    if (n == 0) {            /* no pidfd (too many fds, or no child to watch): look again soon */
        r = coop_sleep_until(coop_now() + STOPS_POLL_NS);
    } else {
        struct coop_fd_event events[MAX_PIDFDS];
        for (int i = 0; i < n; i++)
            events[i] = (struct coop_fd_event){ fds[i], COOP_READ };
        r = coop_wait_fds(events, n, deadline);
        if (r != EINTR && r != COOP_RESTART && r != 0 && r != ETIMEDOUT)
            r = coop_sleep_until(coop_now() + STOPS_POLL_NS);   /* ENOMEM and the like */
    }
    for (int i = idtype == P_PIDFD ? 1 : 0; i < n; i++)
        private_close(fds[i]);
    return r == EINTR || r == COOP_RESTART ? r : 0;
}

/* One wait call: wait4's arguments, or waitid's (info != NULL). */
struct wait_call {
    pid_t pid;
    int *status;
    struct rusage *ru;
    idtype_t idtype;
    id_t id;
    siginfo_t *info;
    int options;
};

/* The call with WNOHANG: > 0 a child's pid, 0 nothing yet, -1 an error. */
static pid_t try_wait(struct wait_call *w)
{
    if (w->info == NULL)
        return REAL(wait4)(w->pid, w->status, w->options | WNOHANG, w->ru);
    /* Linux zeroes *info when no child is ready; the kernel checks the pointer first. */
    if (REAL(waitid)(w->idtype, w->id, w->info, w->options | WNOHANG) != 0)
        return -1;
    return w->info->si_pid;
}

/* The kernel restarts wait4 and waitid after a handler with SA_RESTART, and otherwise
 * fails them with EINTR. */
static pid_t wait_coop(struct wait_call *w)
{
    if (w->info == NULL) {
        w->idtype = w->pid > 0 ? P_PID : w->pid == -1 ? P_ALL : P_PGID;
        w->id = (id_t)(w->pid < -1 ? -w->pid : w->pid > 0 ? w->pid : 0);
    }
    for (;;) {
        pid_t r = try_wait(w);
        if (r != 0)
            return r;
        if (wait_change(w->idtype, w->id, w->options) == EINTR) {
            errno = EINTR;
            return -1;
        }
    }
}

EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
    if ((options & WNOHANG) || shim_cooperative(FAM_proc) == NULL)
        return REAL(wait4)(pid, status, options, ru);
    struct wait_call w = { .pid = pid, .status = status, .ru = ru, .options = options };
    return wait_coop(&w);
}

EXPORT pid_t waitpid(pid_t pid, int *status, int options) { return wait4(pid, status, options, NULL); }
EXPORT pid_t wait(int *status) { return wait4(-1, status, 0, NULL); }
EXPORT pid_t wait3(int *status, int options, struct rusage *ru) { return wait4(-1, status, options, ru); }

EXPORT int waitid(idtype_t idtype, id_t id, siginfo_t *info, int options)
{
    if ((options & WNOHANG) || shim_cooperative(FAM_proc) == NULL)
        return REAL(waitid)(idtype, id, info, options);
    siginfo_t unused;
    if (info == NULL)      /* Linux takes NULL; the WNOHANG tries need the pid */
        info = &unused;
    struct wait_call w = { .idtype = idtype, .id = id, .info = info, .options = options };
    return wait_coop(&w) < 0 ? -1 : 0;
}

/* --- posix_spawn --- */

typedef int spawn_fn(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                     char *const[], char *const[]);

struct spawn_call {
    spawn_fn *fn;
    pid_t *pid;
    const char *path;
    const posix_spawn_file_actions_t *actions;
    const posix_spawnattr_t *attr;
    char *const *argv, *const *envp;
    int ret, err;
    struct shim_sched_loan loan;
};

static void run_spawn(void *p)
{
    struct spawn_call *s = p;
    shim_sched_lend(&s->loan);
    errno = s->err;
    s->ret = s->fn(s->pid, s->path, s->actions, s->attr, s->argv, s->envp);
    s->err = errno;
    shim_sched_take_back(&s->loan);
}

static int spawn(struct spawn_call *s)
{
    /* The child inherits the signal mask, the CPU set and the policy of the thread that
     * spawns it: the caller's, not the pool thread's or the hub's. posix_spawnattr_t holds
     * no pointers, so a copy will do for the mask; the others are lent (run_spawn: no
     * attribute gives a CPU set, nor SCHED_BATCH or SCHED_IDLE). */
    posix_spawnattr_t attr;
    short flags = 0;
    if (s->attr != NULL) {
        attr = *s->attr;
        posix_spawnattr_getflags(&attr, &flags);
    } else {
        posix_spawnattr_init(&attr);
    }
    if (!(flags & POSIX_SPAWN_SETSIGMASK)) {
        sigset_t mask;
        pthread_sigmask(SIG_BLOCK, NULL, &mask);
        posix_spawnattr_setsigmask(&attr, &mask);
        posix_spawnattr_setflags(&attr, flags | POSIX_SPAWN_SETSIGMASK);
    }
    shim_sched_of_caller(&s->loan, LEND_FOR_CHILD);
    s->attr = &attr;
    s->err = errno;
    if (shim_cooperative(FAM_proc) != NULL)
        coop_offload(run_spawn, s);
    else
        run_spawn(s);
    errno = s->err;
    return s->ret;
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    struct spawn_call s = { .fn = REAL(posix_spawn), .pid = pid, .path = path, .actions = actions, .attr = attr,
                            .argv = argv, .envp = envp };
    return spawn(&s);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                        const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    struct spawn_call s = { .fn = REAL(posix_spawnp), .pid = pid, .path = file, .actions = actions, .attr = attr,
                            .argv = argv, .envp = envp };
    return spawn(&s);
}

/* waitpid(pid, 0) as glibc's system and pclose use it: restarted after every signal. */
static pid_t wait_child(pid_t pid, int *status)
{
    pid_t r;
    do
        r = waitpid(pid, status, 0);
    while (r < 0 && errno == EINTR);
    return r;
}

/* --- a child for system() and popen() --- */

/*
 * glibc's posix_spawn clones with CLONE_VM | CLONE_VFORK, which stops the calling OS thread
 * until the child has exec'd: the hub, or a pool thread, and 50 greenlets' children would
 * start one pool-full at a time. system() and popen() need only a signal mask, default
 * dispositions, the caller's CPU set and policy, a dup2 and some closes, so their child is
 * started here with CLONE_VM alone:
 * it runs on a stack of its own in the parent's memory until execve while the hub goes on,
 * and the spawning greenlet parks on a close-on-exec pipe, which reads EOF once the child
 * has exec'd, or the errno of a failed execve. Until then the child shares memory and the
 * thread pointer with the hub: it makes raw system calls only (no errno, no lock, no
 * allocation), with every signal blocked and every handler reset before it unblocks any.
 * CLONE_CHILD_CLEARTID tells when it has left that memory (at execve or exit): only then is
 * its stack freed. system() needs no pipe: it waits for the child's end anyway, and a shell
 * that could not be executed ends with status 127, which is what system() must return then.
 */
struct child_plan {
    const char *path;
    char *const *argv, *const *envp;
    const sigset_t *mask;      /* the child's signal mask; NULL: the caller's */
    sigset_t defaults;         /* set back to SIG_DFL even when ignored (POSIX_SPAWN_SETSIGDEF) */
    int dup_from, dup_to;      /* dup2(dup_from, dup_to) when dup_from >= 0 */
    const int *closes;
    int n_closes;
    /* Filled in by child_start, read by the child. */
    uint64_t child_mask;
    struct shim_sched_loan sched;     /* the caller's CPU set and policy */
    int report;                /* where a failed execve's errno goes, or -1 */
};

struct child {
    pid_t pid;
    int report;                /* read end of the pipe */
    void *stack;
    _Atomic uint32_t in_our_memory;     /* cleared by the kernel at the child's execve or exit */
};

#define CHILD_STACK (32 * 1024)

struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static bool in_set64(uint64_t set, int sig) { return set >> (sig - 1) & 1; }

static uint64_t set64(const sigset_t *set)
{
    uint64_t bits;
    memcpy(&bits, set, sizeof bits);    /* the kernel's sigset: signals 1..64 */
    return bits;
}

__attribute__((no_sanitize("address", "undefined"))) static int child_main(void *arg)
{
    const struct child_plan *p = arg;
    uint64_t defaults = set64(&p->defaults);
    for (int sig = 1; sig <= 64; sig++) {
        struct kernel_sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (!in_set64(defaults, sig)
            && (coop_sys6(SYS_rt_sigaction, sig, 0, (long)&sa, 8, 0, 0) != 0
                || sa.handler == SIG_DFL || sa.handler == SIG_IGN))
            continue;
        sa.handler = SIG_DFL;
        sa.flags = 0;
        sa.restorer = NULL;
        sa.mask = 0;
        coop_sys6(SYS_rt_sigaction, sig, (long)&sa, 0, 8, 0, 0);
    }
    if (p->dup_from >= 0)
        coop_sys(SYS_dup2, p->dup_from, p->dup_to, 0);
    for (int i = 0; i < p->n_closes; i++)
        coop_sys(SYS_close, p->closes[i], 0, 0);
    if (p->sched.has_cpus)
        coop_sys(SYS_sched_setaffinity, 0, sizeof p->sched.cpus, &p->sched.cpus);
    if (p->sched.has_policy)
        coop_sys(SYS_sched_setscheduler, 0, p->sched.policy, &p->sched.param);
    coop_sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&p->child_mask, 0, 8, 0, 0);
    int err = (int)-coop_sys(SYS_execve, p->path, p->argv, p->envp);
    if (p->report >= 0)
        coop_sys(SYS_write, p->report, &err, sizeof err);
    coop_sys(SYS_exit_group, 127, 0, 0);
    return 127;
}

/* The pipe of child_started: its read end in c, its write end (above the fds the child
 * dup2s onto) in plan. */
static int open_report(struct child_plan *plan, struct child *c)
{
    int report[2];
    if (REAL(pipe2)(report, O_CLOEXEC | O_NONBLOCK) != 0)
        return errno;
    if (report[1] <= 2) {     /* stdin or stdout was closed: keep clear of the child's dup2 */
        int high = REAL(fcntl)(report[1], F_DUPFD_CLOEXEC, 3);
        REAL(close)(report[1]);
        if (high < 0) {
            REAL(close)(report[0]);
            return EMFILE;
        }
        report[1] = high;
    }
    c->report = private_fd(report[0]);
    plan->report = report[1];
    return 0;
}

static void close_report(struct child_plan *plan, struct child *c)
{
    if (plan->report >= 0)
        REAL(close)(plan->report);
    if (c->report >= 0)
        private_close(c->report);
    plan->report = c->report = -1;
}

/* Once the child has left the parent's memory (at once after its execve or its end):
 * frees its stack. The kernel's wake is a shared futex wake, so the wait is not private. */
static void child_forget(struct child *c)
{
    uint32_t in_use;
    while ((in_use = atomic_load(&c->in_our_memory)) != 0)
        coop_sys6(SYS_futex, (long)&c->in_our_memory, FUTEX_WAIT, in_use, 0, 0, 0);
    free(c->stack);
}

/* Clones the child: 0, or an errno (EINVAL or ENOSYS where a sandbox refuses CLONE_VM
 * alone: the caller then goes through glibc). With report, the caller then waits for its
 * execve with child_started; without, for its end, then calls child_forget. */
static int child_start(struct child_plan *plan, struct child *c, bool report)
{
    plan->report = c->report = -1;
    int err = report ? open_report(plan, c) : 0;
    if (err != 0)
        return err;
    c->stack = malloc(CHILD_STACK);
    if (c->stack == NULL) {
        close_report(plan, c);
        return ENOMEM;
    }
    atomic_store(&c->in_our_memory, 1);

    /* The caller's signal mask (its greenlet's, where coop keeps one per greenlet). Then no
     * handler may run in the child before it has reset them all: every signal is blocked
     * (glibc's pthread_sigmask would leave its own two out) around the clone. */
    sigset_t caller, all, old;
    if (plan->mask == NULL)
        pthread_sigmask(SIG_BLOCK, NULL, &caller);
    plan->child_mask = set64(plan->mask != NULL ? plan->mask : &caller);
    shim_sched_of_caller(&plan->sched, LEND_FOR_CHILD);     /* and its CPU set and policy, which the child sets */
    sigfillset(&all);
    coop_sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8, 0, 0);
    c->pid = clone(child_main, (char *)c->stack + CHILD_STACK, CLONE_VM | CLONE_CHILD_CLEARTID | SIGCHLD,
                   plan, NULL, NULL, &c->in_our_memory);
    err = errno;
    coop_sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8, 0, 0);
    if (plan->report >= 0)
        REAL(close)(plan->report);
    plan->report = -1;
    if (c->pid < 0) {
        close_report(plan, c);
        free(c->stack);
        return err;
    }
    return 0;
}

/* Waits, parking the caller, until the child has exec'd: 0, or execve's errno (the child
 * is then reaped). */
static int child_started(struct child *c)
{
    int err = 0;
    for (;;) {
        ssize_t n = REAL(read)(c->report, &err, sizeof err);
        if (n == 0 || n == sizeof err)
            break;
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            if (errno == EAGAIN && shim_cooperative(FAM_proc) != NULL)
                coop_wait_fd(c->report, COOP_READ, COOP_NO_DEADLINE);
            else if (errno == EAGAIN)
                REAL(poll)(&(struct pollfd){ .fd = c->report, .events = POLLIN }, 1, -1);
            continue;
        }
        err = 0;       /* the program closed the pipe under us: the wait status will tell */
        break;
    }
    private_close(c->report);
    child_forget(c);     /* at once: EOF comes after the kernel cleared the word */
    if (err != 0) {
        int status;
        wait_child(c->pid, &status);
    }
    return err;
}

/* What the child does, through glibc's posix_spawn (on the pool, as any posix_spawn). */
static int child_spawn_libc(const struct child_plan *plan, pid_t *pid)
{
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
    short flags = POSIX_SPAWN_SETSIGDEF;
    posix_spawnattr_setsigdefault(&attr, &plan->defaults);
    if (plan->mask != NULL) {
        posix_spawnattr_setsigmask(&attr, plan->mask);
        flags |= POSIX_SPAWN_SETSIGMASK;
    }
    posix_spawnattr_setflags(&attr, flags);
    int err = 0;
    if (plan->dup_from >= 0)
        err = posix_spawn_file_actions_adddup2(&actions, plan->dup_from, plan->dup_to);
    for (int i = 0; i < plan->n_closes && err == 0; i++)
        err = posix_spawn_file_actions_addclose(&actions, plan->closes[i]);
    if (err == 0)
        err = posix_spawn(pid, plan->path, &actions, &attr, plan->argv, plan->envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return err;
}

/* Runs the child to its end, as system() does: 0 and its wait status, or the errno of a
 * spawn that failed. */
static int child_run(struct child_plan *plan, int *status)
{
    struct child c;
    pid_t pid;
    int err = child_start(plan, &c, false);
    if (err == EINVAL || err == ENOSYS) {
        if ((err = child_spawn_libc(plan, &pid)) == 0 && wait_child(pid, status) != pid)
            *status = -1;
        return err;
    }
    if (err == 0) {
        if (wait_child(c.pid, status) != c.pid)
            *status = -1;
        child_forget(&c);
    }
    return err;
}

/* --- exec --- */

enum exec_form { EXEC_PATH, EXEC_SEARCH, EXEC_FD, EXEC_AT };

struct exec_call {
    enum exec_form form;
    int fd, flags;             /* EXEC_FD's fd; EXEC_AT's directory and flags */
    const char *path;
    char *const *argv, *const *envp;
};

/* The real call, with the calling OS thread carrying the caller's state: -1 and its errno
 * if it fails, the thread's own state back. Every signal is blocked from exec_begin until
 * the caller's mask is set, and again from the failed call's return, so no handler runs
 * that could move the greenlet to another thread between a lend and its take-back; during
 * the call the caller's mask lets its handlers in (see shim/signal.c). */
static int exec_as_caller(const struct exec_call *c)
{
    struct shim_sched_loan loan;
    struct shim_signal_handover signals;
    shim_signal_exec_begin(&signals);
    shim_sched_of_caller(&loan, LEND_FOR_EXEC);     /* after what exec_begin ran */
    shim_sched_lend(&loan);
    shim_signal_exec_mask(&signals, true);
    switch (c->form) {
    case EXEC_PATH: REAL(execve)(c->path, c->argv, c->envp); break;
    case EXEC_SEARCH: REAL(execvpe)(c->path, c->argv, c->envp); break;
    case EXEC_FD: REAL(fexecve)(c->fd, c->argv, c->envp); break;
    case EXEC_AT: REAL(execveat)(c->fd, c->path, c->argv, c->envp, c->flags); break;
    }
    int err = errno;
    shim_signal_exec_mask(&signals, false);
    shim_sched_take_back(&loan);
    shim_signal_exec_end(&signals);
    errno = err;
    return -1;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    struct exec_call c = { .form = EXEC_PATH, .path = path, .argv = argv, .envp = envp };
    return exec_as_caller(&c);
}

EXPORT int execv(const char *path, char *const argv[])
{
    struct exec_call c = { .form = EXEC_PATH, .path = path, .argv = argv, .envp = environ };
    return exec_as_caller(&c);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    struct exec_call c = { .form = EXEC_SEARCH, .path = file, .argv = argv, .envp = envp };
    return exec_as_caller(&c);
}

EXPORT int execvp(const char *file, char *const argv[])
{
    struct exec_call c = { .form = EXEC_SEARCH, .path = file, .argv = argv, .envp = environ };
    return exec_as_caller(&c);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    struct exec_call c = { .form = EXEC_FD, .fd = fd, .argv = argv, .envp = envp };
    return exec_as_caller(&c);
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
    struct exec_call c = { .form = EXEC_AT, .fd = dirfd, .flags = flags, .path = path,
                           .argv = argv, .envp = envp };
    return exec_as_caller(&c);
}

/* execl, execle, execlp: the arguments from arg0 to the NULL as a vector on the caller's
 * stack, and after the NULL, with_env, the environment. */
static int exec_list(enum exec_form form, bool with_env, const char *path, const char *arg0, va_list ap)
{
    va_list count;
    va_copy(count, ap);
    size_t n = 0;
    for (const char *arg = arg0; arg != NULL && n < INT_MAX; arg = va_arg(count, const char *))
        n++;
    va_end(count);
    if (n == INT_MAX)
        return shim_syscall_result(E2BIG);     /* as glibc's */
    char *argv[n + 1];
    argv[0] = (char *)arg0;
    for (size_t i = 1; i < n; i++)
        argv[i] = va_arg(ap, char *);
    argv[n] = NULL;
    char *const *envp = environ;
    if (with_env) {
        if (n > 0)
            va_arg(ap, char *);     /* the NULL */
        envp = va_arg(ap, char *const *);
    }
    struct exec_call c = { .form = form, .path = path, .argv = argv, .envp = envp };
    return exec_as_caller(&c);
}

EXPORT int execl(const char *path, const char *arg0, ...)
{
    va_list ap;
    va_start(ap, arg0);
    int r = exec_list(EXEC_PATH, false, path, arg0, ap);
    va_end(ap);
    return r;
}

EXPORT int execle(const char *path, const char *arg0, ...)
{
    va_list ap;
    va_start(ap, arg0);
    int r = exec_list(EXEC_PATH, true, path, arg0, ap);
    va_end(ap);
    return r;
}

EXPORT int execlp(const char *file, const char *arg0, ...)
{
    va_list ap;
    va_start(ap, arg0);
    int r = exec_list(EXEC_SEARCH, false, file, arg0, ap);
    va_end(ap);
    return r;
}

/* --- system --- */

/*
 * As glibc's (stdlib/system.c): SIGINT and SIGQUIT are ignored in the whole process
 * while any system() runs, and restored by the last one to end; SIGCHLD is blocked in
 * the caller so no handler reaps the shell first; the shell gets the caller's mask and
 * default SIGINT and SIGQUIT unless they were ignored before. The signal mask belongs to
 * the OS thread that all the hub's greenlets share, so SIGCHLD stays blocked while any
 * of them is in system(), and is unblocked by the last one (unless it was blocked before).
 */
static pthread_mutex_t system_lock = PTHREAD_MUTEX_INITIALIZER;
static int system_calls;
static struct sigaction saved_intr, saved_quit;
static __thread int sigchld_holders;
static __thread bool sigchld_was_blocked;

static int do_system(const char *line)
{
    struct sigaction ignore = { .sa_handler = SIG_IGN };
    sigemptyset(&ignore.sa_mask);
    pthread_mutex_lock(&system_lock);
    if (system_calls++ == 0) {
        sigaction(SIGINT, &ignore, &saved_intr);
        sigaction(SIGQUIT, &ignore, &saved_quit);
    }
    sigset_t reset;
    sigemptyset(&reset);
    if (saved_intr.sa_handler != SIG_IGN)
        sigaddset(&reset, SIGINT);
    if (saved_quit.sa_handler != SIG_IGN)
        sigaddset(&reset, SIGQUIT);
    pthread_mutex_unlock(&system_lock);

    sigset_t chld, mask;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, &mask);
    if (sigchld_holders++ == 0)
        sigchld_was_blocked = sigismember(&mask, SIGCHLD);
    else if (!sigchld_was_blocked)
        sigdelset(&mask, SIGCHLD);     /* the caller's own mask, not the other callers' */

    struct child_plan plan = { .path = "/bin/sh", .argv = (char *const[]){ "sh", "-c", "--", (char *)line, NULL },
                               .envp = environ, .mask = &mask, .defaults = reset, .dup_from = -1 };
    int status = -1;
    int ret = child_run(&plan, &status);
    if (ret != 0)
        status = W_EXITCODE(127, 0);   /* POSIX: as if the shell had run _exit(127) */

    int saved = errno;
    pthread_mutex_lock(&system_lock);
    if (--system_calls == 0) {
        sigaction(SIGINT, &saved_intr, NULL);
        sigaction(SIGQUIT, &saved_quit, NULL);
    }
    pthread_mutex_unlock(&system_lock);
    if (--sigchld_holders == 0 && !sigchld_was_blocked)
        pthread_sigmask(SIG_UNBLOCK, &chld, NULL);
    errno = ret != 0 ? ret : saved;
    return status;
}

/* glibc's own system() and popen() (a lone greenlet's, or the family off): their child takes
 * the calling thread's CPU set and policy, which the caller lends it meanwhile. */
static struct shim_sched_loan lend_for_libc_child(void)
{
    struct shim_sched_loan loan;
    shim_sched_of_caller(&loan, LEND_FOR_CHILD);
    shim_sched_lend(&loan);
    return loan;
}

EXPORT int system(const char *line)
{
    if (shim_cooperative(FAM_proc) == NULL) {
        struct shim_sched_loan loan = lend_for_libc_child();
        int status = REAL(system)(line);
        shim_sched_take_back(&loan);
        return status;
    }
    if (line == NULL)      /* is there a shell? */
        return do_system("exit 0") == 0;
    return do_system(line);
}

/* --- popen --- */

/*
 * glibc's popen stream reads and writes with its internal read and write, which would
 * block the hub, and its close waits with its internal waitpid. coop's is a stream of
 * fopencookie whose functions call the cooperative read, write and waitpid. Its _fileno
 * is set to the pipe, so fileno() works as on glibc's (a cookie stream's is -2, and
 * glibc never uses the fd of a cookie stream for anything else). As with any stream a
 * greenlet waits inside, two greenlets of one hub must not use the same popen stream at
 * the same time: stdio's lock is recursive per OS thread and would let both in.
 */
struct piped {
    struct piped *next;
    int fd;
    pid_t pid;
};

static pthread_mutex_t piped_lock = PTHREAD_MUTEX_INITIALIZER;
static struct piped *piped_list;

static ssize_t piped_read(void *cookie, char *buf, size_t len)
{
    return read(((struct piped *)cookie)->fd, buf, len);
}

static ssize_t piped_write(void *cookie, const char *buf, size_t len)
{
    return write(((struct piped *)cookie)->fd, buf, len);
}

static void piped_unlink(struct piped *p)
{
    pthread_mutex_lock(&piped_lock);
    for (struct piped **link = &piped_list; *link != NULL; link = &(*link)->next)
        if (*link == p) {
            *link = p->next;
            break;
        }
    pthread_mutex_unlock(&piped_lock);
}

/* What fclose (and so pclose) returns: the child's wait status, or -1. */
static int piped_close(void *cookie)
{
    struct piped *p = cookie;
    piped_unlink(p);
    int status, closed = close(p->fd);
    pid_t pid = p->pid;
    free(p);
    if (closed != 0 || wait_child(pid, &status) != pid)
        return -1;
    return status;
}

/* Starts popen's child with its end of the pipe as child_fd, every earlier popen stream
 * closed in it (POSIX asks for it), and records it. The list is read and the child cloned
 * under the lock, so a stream made meanwhile is either closed by the child or still
 * close-on-exec; the wait for its execve is not. 0 or an errno. */
static int popen_child(struct piped *p, const char *command, int child_end_fd, int child_fd, int parent_fd)
{
    char *const argv[] = { "sh", "-c", "--", (char *)command, NULL };
    struct child_plan plan = { .path = "/bin/sh", .argv = argv, .envp = environ,
                               .dup_from = child_end_fd, .dup_to = child_fd };
    sigemptyset(&plan.defaults);
    struct child c;
    bool direct = false;
    int err = 0;

    pthread_mutex_lock(&piped_lock);
    for (struct piped *q = piped_list; q != NULL; q = q->next)
        plan.n_closes++;
    int *closes = malloc(((size_t)plan.n_closes + 1) * sizeof *closes);
    plan.n_closes = 0;
    for (struct piped *q = piped_list; q != NULL && closes != NULL; q = q->next)
        if (q->fd != child_fd)
            closes[plan.n_closes++] = q->fd;
    plan.closes = closes;
    if (closes == NULL)
        err = ENOMEM;
    else if ((err = child_start(&plan, &c, true)) == 0)
        direct = true;
    else if (err == EINVAL || err == ENOSYS)
        err = child_spawn_libc(&plan, &p->pid);
    if (err == 0) {
        p->pid = direct ? c.pid : p->pid;
        p->fd = parent_fd;
        p->next = piped_list;
        piped_list = p;
    }
    pthread_mutex_unlock(&piped_lock);

    if (direct && (err = child_started(&c)) != 0)
        piped_unlink(p);
    free(closes);
    return err;
}

/* glibc's _IO_new_proc_open: the pipe is made close-on-exec and the child's end moved to
 * its stdin or stdout. A failed spawn reports ENOMEM, as glibc does. */
static FILE *do_popen(const char *command, const char *mode)
{
    bool reading = false, writing = false, cloexec = false;
    for (const char *m = mode; *m != '\0'; m++) {
        if (*m == 'r')
            reading = true;
        else if (*m == 'w')
            writing = true;
        else if (*m == 'e')
            cloexec = true;
        else
            reading = writing = true;    /* EINVAL below */
    }
    if (reading == writing) {
        errno = EINVAL;
        return NULL;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return NULL;
    int parent_end = reading ? 0 : 1, child_end = 1 - parent_end, child_fd = reading ? 1 : 0;
    struct piped *p = calloc(1, sizeof *p);
    FILE *fp = NULL;
    if (p == NULL)
        goto failed;
    if (fds[child_end] == child_fd) {     /* dup2 onto itself would keep close-on-exec */
        int moved = fcntl(child_fd, F_DUPFD_CLOEXEC, 0);
        if (moved < 0)
            goto failed;
        close(fds[child_end]);
        fds[child_end] = moved;
    }
    if (popen_child(p, command, fds[child_end], child_fd, fds[parent_end]) != 0)
        goto failed;
    close(fds[child_end]);
    fds[child_end] = -1;
    if (!cloexec)
        fcntl(fds[parent_end], F_SETFD, 0);

    cookie_io_functions_t io = { .read = reading ? piped_read : NULL,
                                 .write = writing ? piped_write : NULL, .close = piped_close };
    if ((fp = fopencookie(p, reading ? "r" : "w", io)) == NULL) {
        /* Out of memory with a child running: give its end back and reap it. */
        piped_close(p);
        errno = ENOMEM;
        return NULL;
    }
    fp->_fileno = p->fd;
    return fp;

failed:
    free(p);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    errno = ENOMEM;
    return NULL;
}

EXPORT FILE *popen(const char *command, const char *mode)
{
    if (!shim_patched[FAM_proc]) {
        struct shim_sched_loan loan = lend_for_libc_child();
        FILE *stream = REAL(popen)(command, mode);
        shim_sched_take_back(&loan);
        return stream;
    }
    return do_popen(command, mode);
}

/* In the child of a fork, which has only the forking greenlet: the other greenlets'
 * system() calls and popen() spawns are gone, with the locks they held and the SIGCHLD
 * block they shared in the OS thread's mask (the forking greenlet is in neither: they do
 * not fork). SIGINT and SIGQUIT stay ignored, as glibc leaves them in such a child. */
static void proc_fork_child(void)
{
    system_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    piped_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    if (sigchld_holders > 0 && !sigchld_was_blocked) {
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        pthread_sigmask(SIG_UNBLOCK, &chld, NULL);
    }
    sigchld_holders = 0;
}

/* --- COOP_NO_INHERIT --- */

/* Whether an LD_PRELOAD entry names this library: the same file, or for a bare name
 * (which the loader looks up in its paths), the same file name. */
static bool is_this_library(const char *entry, size_t len, const char *self, const struct stat *st)
{
    char path[4096];
    if (len == 0 || len >= sizeof path)
        return false;
    memcpy(path, entry, len);
    path[len] = '\0';
    if (memchr(path, '/', len) == NULL) {
        const char *base = strrchr(self, '/');
        return strcmp(path, base != NULL ? base + 1 : self) == 0;
    }
    struct stat other;
    return stat(path, &other) == 0 && other.st_dev == st->st_dev && other.st_ino == st->st_ino;
}

/* Called at start-up when COOP_NO_INHERIT is set: removes this library from LD_PRELOAD
 * (the loader splits it at colons and spaces), so that programs this one executes run
 * without coop; the other entries stay, in order. */
void shim_proc_no_inherit(void)
{
    const char *preload = getenv("LD_PRELOAD");
    Dl_info self;
    struct stat st;
    if (preload == NULL || dladdr((void *)shim_proc_no_inherit, &self) == 0 || self.dli_fname == NULL
        || stat(self.dli_fname, &st) != 0)
        return;
    char *kept = malloc(strlen(preload) + 1);
    if (kept == NULL)
        return;
    size_t n = 0;
    for (const char *p = preload; *p != '\0';) {
        size_t len = strcspn(p, ": ");
        if (len > 0 && !is_this_library(p, len, self.dli_fname, &st)) {
            if (n > 0)
                kept[n++] = ':';
            memcpy(kept + n, p, len);
            n += len;
        }
        p += len;
        if (*p != '\0')
            p++;
    }
    kept[n] = '\0';
    if (n == 0)
        unsetenv("LD_PRELOAD");
    else
        setenv("LD_PRELOAD", kept, 1);
    free(kept);
    /* Done: a program started later with cooprun should not inherit the request. */
    unsetenv("COOP_NO_INHERIT");
}
