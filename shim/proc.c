/*
 * Family proc: child processes. Creating one must not stop the hub, and waiting for one
 * must park only the caller.
 *
 * - fork: the child keeps only the forking greenlet, with a fresh loop (coop_fork_child),
 *   as POSIX keeps only the forking thread. vfork is fork here: a vfork child borrows its
 *   parent's memory, and any wrapper it called (close, dup2, write...) would change the
 *   parent's greenlets and epoll set under it.
 * - posix_spawn, posix_spawnp: glibc's clone(CLONE_VFORK) stops the calling OS thread
 *   until the child has exec'd, so the call runs on the threadpool, with the caller's
 *   signal mask given to the child explicitly since a pool thread has its own.
 * - wait, waitpid, wait3, wait4, waitid: the real call with WNOHANG, and between tries a
 *   wait on pidfds (pollable, readable once the process has ended) of the child asked
 *   for, or of every child for "any child" and process groups.
 * - system, popen: glibc's wait inside with its internal waitpid; both are written again
 *   over posix_spawn and the cooperative waitpid. pclose needs no wrapper: glibc's pclose
 *   is fclose, and fclose of coop's popen stream calls the stream's own close function.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* POSIX allows vfork to be fork; a C wrapper could not be anything else. */
EXPORT pid_t vfork(void) { return fork(); }

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
    w->info->si_pid = 0;
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
};

static void run_spawn(void *p)
{
    struct spawn_call *s = p;
    errno = s->err;
    s->ret = s->fn(s->pid, s->path, s->actions, s->attr, s->argv, s->envp);
    s->err = errno;
}

static int spawn(struct spawn_call *s)
{
    if (shim_cooperative(FAM_proc) == NULL)
        return s->fn(s->pid, s->path, s->actions, s->attr, s->argv, s->envp);
    /* The child inherits the signal mask of the thread that spawns it: the caller's,
     * not the pool thread's. posix_spawnattr_t holds no pointers, so a copy will do. */
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
    s->attr = &attr;
    s->err = errno;
    coop_offload(run_spawn, s);
    errno = s->err;
    return s->ret;
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
                       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    struct spawn_call s = { REAL(posix_spawn), pid, path, actions, attr, argv, envp, 0, 0 };
    return spawn(&s);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
                        const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
    struct spawn_call s = { REAL(posix_spawnp), pid, file, actions, attr, argv, envp, 0, 0 };
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

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &mask);
    posix_spawnattr_setsigdefault(&attr, &reset);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int status = -1;
    int ret = posix_spawn(&pid, "/bin/sh", NULL, &attr,
                          (char *const[]){ "sh", "-c", "--", (char *)line, NULL }, environ);
    posix_spawnattr_destroy(&attr);
    if (ret == 0) {
        if (wait_child(pid, &status) != pid)
            status = -1;
    } else {
        status = W_EXITCODE(127, 0);   /* POSIX: as if the shell had run _exit(127) */
    }

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

EXPORT int system(const char *line)
{
    if (shim_cooperative(FAM_proc) == NULL)
        return REAL(system)(line);
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

/* What fclose (and so pclose) returns: the child's wait status, or -1. */
static int piped_close(void *cookie)
{
    struct piped *p = cookie;
    pthread_mutex_lock(&piped_lock);
    for (struct piped **link = &piped_list; *link != NULL; link = &(*link)->next)
        if (*link == p) {
            *link = p->next;
            break;
        }
    pthread_mutex_unlock(&piped_lock);
    int status, closed = close(p->fd);
    pid_t pid = p->pid;
    free(p);
    if (closed != 0 || wait_child(pid, &status) != pid)
        return -1;
    return status;
}

/* glibc's _IO_new_proc_open, over posix_spawn: the pipe is made close-on-exec, the
 * child's end moved to its stdin or stdout, every earlier popen stream closed in the
 * child (POSIX asks for it). A failed spawn reports ENOMEM, as glibc does. */
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
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (p == NULL)
        goto failed;
    if (fds[child_end] == child_fd) {     /* dup2 onto itself would keep close-on-exec */
        int moved = fcntl(child_fd, F_DUPFD_CLOEXEC, 0);
        if (moved < 0)
            goto failed;
        close(fds[child_end]);
        fds[child_end] = moved;
    }
    if (posix_spawn_file_actions_adddup2(&actions, fds[child_end], child_fd) != 0)
        goto failed;

    pthread_mutex_lock(&piped_lock);
    bool spawned = true;
    for (struct piped *q = piped_list; q != NULL && spawned; q = q->next)
        if (q->fd != child_fd && posix_spawn_file_actions_addclose(&actions, q->fd) != 0)
            spawned = false;
    spawned = spawned && posix_spawn(&p->pid, "/bin/sh", &actions, NULL,
                                     (char *const[]){ "sh", "-c", "--", (char *)command, NULL },
                                     environ) == 0;
    if (spawned) {
        p->fd = fds[parent_end];
        p->next = piped_list;
        piped_list = p;
    }
    pthread_mutex_unlock(&piped_lock);
    if (!spawned)
        goto failed;
    close(fds[child_end]);
    fds[child_end] = -1;
    if (!cloexec)
        fcntl(fds[parent_end], F_SETFD, 0);

    cookie_io_functions_t io = { .read = reading ? piped_read : NULL,
                                 .write = writing ? piped_write : NULL, .close = piped_close };
    posix_spawn_file_actions_destroy(&actions);
    if ((fp = fopencookie(p, reading ? "r" : "w", io)) == NULL) {
        /* Out of memory with a child running: give its end back and reap it. */
        piped_close(p);
        errno = ENOMEM;
        return NULL;
    }
    fp->_fileno = p->fd;
    return fp;

failed:
    posix_spawn_file_actions_destroy(&actions);
    free(p);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    errno = ENOMEM;
    return NULL;
}

EXPORT FILE *popen(const char *command, const char *mode)
{
    if (!shim_patched[FAM_proc])
        return REAL(popen)(command, mode);
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
