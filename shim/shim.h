/* What every wrapper file shares: the real functions, the families, the fd facts, and the
 * loop that turns a blocking call into a cooperative one. */
#ifndef COOP_SHIM_H
#define COOP_SHIM_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "../core/coop.h"

/* Families, in the order COOP_PATCH names them. */
enum shim_family { FAM_io, FAM_net, FAM_poll, FAM_time, FAM_thread, FAM_dns, FAM_file,
                   FAM_proc, FAM_signal, FAM_COUNT };
extern const char *const shim_family_names[FAM_COUNT];
extern bool shim_patched[FAM_COUNT];
/* Whether the thread family's objects (rwlocks, condition variables, semaphores, barriers)
 * follow coop's protocol: shim_patched's word, or before coop's constructor has read the
 * settings, what they will say (init.c). */
extern atomic_bool shim_settings_read;
bool shim_thread_objects_ours_before_start(void);
static inline bool shim_thread_objects_ours(void)
{
    return __builtin_expect(atomic_load_explicit(&shim_settings_read, memory_order_acquire), 1)
               ? shim_patched[FAM_thread]
               : shim_thread_objects_ours_before_start();
}

/* A system call's result for an error number: 0, or -1 with errno set. */
static inline int shim_syscall_result(int err)
{
    if (err == 0)
        return 0;
    errno = err;
    return -1;
}

/* The real libc functions, resolved in the constructor or on first use. */
#define COOP_FN(family, name, version) extern void *coop_real_##name __attribute__((visibility("hidden")));
#include "surface.h"
#undef COOP_FN
enum shim_fn_index {
#define COOP_FN(family, name, version) SHIM_FN_##name,
#include "surface.h"
#undef COOP_FN
    SHIM_FN_COUNT
};
void *shim_resolve(enum shim_fn_index i);
void shim_resolve_all(void);
#define REAL(name) \
    ((__typeof__(&name))(coop_real_##name != NULL ? coop_real_##name : shim_resolve(SHIM_FN_##name)))

/* COOP_ALWAYS_COOPERATIVE: a lone greenlet takes the cooperative path too, as if another
 * greenlet existed, so that a program's own tests can exercise that path. */
extern bool shim_always_cooperative;

/* The calling greenlet when a call of this family should park it, NULL when the call
 * should go to libc unchanged: family off, runtime code, or no other greenlet to run.
 * Inline: every wrapper asks first. A preemption that could not be taken where the
 * greenlet was interrupted is taken here (core/preempt.c): a wrapper's entry, before it
 * has done anything. The non-blocking calls a polling loop makes (locks and trylocks,
 * pthread_self, pthread_equal; never an unlock: see mutex.c) have this check of their own. */
static inline struct coop_greenlet *shim_cooperative(enum shim_family family)
{
    if (!shim_patched[family])
        return NULL;
    coop_preempt_point();
    struct coop_greenlet *g = coop_self();
    return g != NULL && (shim_always_cooperative || !coop_alone()) ? g : NULL;
}

/* Set in the child of a real vfork (proc.c), which runs in its parent's memory until it
 * execs: its wrapper calls must leave coop's tables alone, which describe the parent. */
extern __thread bool shim_vfork_child;

/* What the shim knows of an fd; see fdtab.c. */
enum shim_fd_kind { FD_PLAIN, FD_SOCKET, FD_POLLABLE };
/* Whether a read or write on a pollable fd that is not a socket can be tried without
 * blocking (preadv2/pwritev2 with RWF_NOWAIT): not known yet, yes, or no (terminals, old
 * kernels: then poll says when the call cannot block). */
enum shim_nowait { NOWAIT_UNKNOWN, NOWAIT_WORKS, NOWAIT_REFUSED };
struct shim_fd {
    uint8_t known;
    uint8_t kind;
    uint8_t nowait;
    bool nonblock;           /* the program's own O_NONBLOCK */
    bool no_read, no_write;  /* not open for it (O_ACCMODE, O_PATH): the kernel says EBADF */
    int64_t timeout[2];      /* SO_RCVTIMEO, SO_SNDTIMEO in ns; 0 = none */
    bool lingers;            /* SO_LINGER on with a time: the last close waits for the peer */
};
struct shim_fd *shim_fd(int fd);
void shim_fd_created(int fd, enum shim_fd_kind kind, bool nonblock);
/* The same, from the flags it was opened with (O_ACCMODE, O_PATH, O_NONBLOCK). */
void shim_fd_opened(int fd, enum shim_fd_kind kind, int flags);
void shim_fd_copied(int from, int to);
void shim_fd_closed(int fd);
/* Whether the table knows fd as a socket whose close lingers (never classifies it). */
bool shim_fd_lingers(int fd);
/* Whether SO_LINGER's value makes a close wait: on with a time (the kernel takes a negative
 * one as for ever; 0 resets the connection at once). */
static inline bool shim_linger_waits(const struct linger *l) { return l->l_onoff && l->l_linger != 0; }
/* close_range's: the program's fds of [first, last] that the table knows. */
void shim_fd_range_closed(unsigned first, unsigned last);

/* One try of a call on an fd: TRY_DONTWAIT with MSG_DONTWAIT (a socket), TRY_NOWAIT with
 * RWF_NOWAIT (another pollable fd), TRY_POLLED once poll said the fd is ready (an output
 * call then writes at most PIPE_BUF bytes, which cannot block), TRY_BLOCKING as made. */
enum shim_try { TRY_BLOCKING, TRY_DONTWAIT, TRY_NOWAIT, TRY_POLLED };
typedef ssize_t (*shim_attempt)(int fd, void *args, enum shim_try how);
enum { SHIM_IN = 0, SHIM_OUT = 1 };
/* What a call can do: take MSG_DONTWAIT on a socket, take RWF_NOWAIT on other fds (read,
 * write and their vector forms); SHIM_SOCKET_CALL: only a socket can make it wait (on
 * anything else the kernel answers at once: ENOTSOCK). */
enum { SHIM_DONTWAIT = 1, SHIM_NOWAIT = 2, SHIM_SOCKET_CALL = 4 };
/* The call with a blocking call's semantics, retried until it stops failing with EAGAIN;
 * the caller waits only where the kernel's own call would (see blocking.c). */
ssize_t shim_blocking(int fd, int dir, int can, shim_attempt attempt, void *args);
/* An output call: write/writev (is_write) or send/sendto/sendmsg with flags. user is
 * sendmsg's own msghdr, user_iov says msg.msg_iov is the program's (writev): coop reads
 * them only once the kernel has accepted them. */
struct shim_out {
    struct msghdr msg;
    const struct msghdr *user;
    bool user_iov;
    int flags;
    bool is_write;
};
/* Writes everything unless an error, a timeout or a signal stops it (see blocking.c). */
ssize_t shim_send_all(int fd, struct shim_out *out);
/* Waits for fd like a blocking call would, honouring SO_*TIMEO: 0 or -1 with errno. */
int shim_wait_fd(int fd, int dir, int64_t deadline, bool restartable);
/* Whether poll says fd is ready for dir right now. */
bool shim_ready_now(int fd, int dir);

/* Parks the caller while *word == seen (futex-style; see futex.c): 0, EAGAIN, ETIMEDOUT
 * or EINTR / COOP_RESTART. */
int shim_park_while(_Atomic uint32_t *word, uint32_t seen, int64_t deadline, uint32_t bitset,
                    const char *what);
/* Objects shared with other processes (shared.c): waits in the kernel's futex that park
 * only the calling greenlet. The futex wait gives 0 (woken, maybe spuriously) or ETIMEDOUT;
 * the semaphore take gives 0, or -1 with errno as sem_clockwait's. */
int shim_shared_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline);
void shim_shared_futex_wake(_Atomic uint32_t *word, int n);
int shim_shared_sem_take(sem_t *s, int64_t deadline);
/* Forgets which greenlets write shared read-write locks (mutex.c's fork handler). */
void shim_shared_fork_child(void);
/* A wait on a process-shared condition variable with m held (coop's mutex): 0 (maybe
 * spurious) or ETIMEDOUT, m held again. */
int shim_shared_cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline);
/* Process-shared read-write locks; deadline 0 means try. */
int shim_shared_rwlock_lock(pthread_rwlock_t *l, bool write, int64_t deadline);
int shim_shared_rwlock_unlock(pthread_rwlock_t *l);
int shim_mutex_lock(pthread_mutex_t *m);
int shim_mutex_unlock(pthread_mutex_t *m);
/* An owner id for recursive and error-checking locks: a tid, or a greenlet's id with
 * bit 30 set (tids stay below 2^22), unique within the process only (mutex.c). */
int shim_owner_id(void);

/* Memory the program points at, read as the kernel reads it: false with errno EFAULT where
 * the kernel would fail with EFAULT, instead of a crash. For arguments libc hands to the
 * kernel unread, which coop must read before the kernel has seen them. */
bool shim_copy_in(void *to, const void *from, size_t n);
/* A timeout such a call was given, read and checked as the kernel does: 0, EFAULT or EINVAL. */
int shim_read_timeout(const struct timespec *user, struct timespec *ts);
/* Whether a timeout is one the kernel takes (libc has read it already: no EFAULT). */
bool shim_valid_timeout(const struct timespec *ts);

/* Deadlines from the time arguments of libc calls. */
int64_t shim_deadline_after(const struct timespec *rel);
int64_t shim_deadline_at(clockid_t clock, const struct timespec *abs);
int64_t shim_deadline_ms(int timeout_ms);
/* The deadline of a pthread-style absolute timeout, or EINVAL for a bad one. */
int shim_abs_deadline(clockid_t clock, const struct timespec *abstime, int64_t *deadline);
struct timespec shim_remaining(int64_t deadline);

/* Signals per greenlet (see signal.c): a new greenlet's mask is mask, or its creator's
 * (NULL). */
void shim_signal_thread_created(struct coop_greenlet *g, const sigset_t *mask);
void shim_signal_thread_exit(struct coop_greenlet *g);
/* A wait that a handler ends (ppoll, pselect, epoll_pwait, sigsuspend, pause): runs
 * wait(call, handled) with mask as the caller's mask meanwhile (NULL: its own), where
 * handled is the count of handlers run before, for shim_signal_handled_since (a handler
 * ran: the wait ends with EINTR); then restores the mask and runs what came. */
int shim_signal_wait(const sigset_t *mask, int (*wait)(void *call, unsigned handled), void *call);
/* Around a real blocking call inside such a wait (ppoll's fallback for fds coop cannot
 * watch): signals run their handlers at once meanwhile, and the kernel's EINTR ends the
 * call. begin returns what end needs. */
bool shim_signal_kernel_wait_begin(void);
void shim_signal_kernel_wait_end(bool in_wait);
bool shim_signal_handled_since(unsigned handled);
unsigned shim_signal_handled(void);        /* the count, for handled_since, without a mask */
/* Around an exec (signal.c): the calling OS thread takes the caller's signal mask, and the
 * signals queued for the caller that it blocks are queued again in the kernel, where the new
 * program finds them pending. exec_begin blocks every signal on the thread and makes the
 * copies; exec_mask(true) sets the caller's mask, last before the call, exec_mask(false)
 * blocks all again, first after a failed call; exec_end takes the copies back and puts the
 * thread's mask back. */
struct shim_signal_handover {
    bool handed;
    pid_t thread;
    sigset_t thread_mask;
    uint64_t blocked;           /* the caller's mask */
    uint16_t copies[NSIG];      /* per signal, the copies queued in the kernel */
};
void shim_signal_exec_begin(struct shim_signal_handover *h);
void shim_signal_exec_mask(struct shim_signal_handover *h, bool callers);
void shim_signal_exec_end(struct shim_signal_handover *h);
/* Whether the calling greenlet's signal mask is coop's to keep (the signal family is on). */
bool shim_signal_per_greenlet(void);
void shim_locals_exit(struct coop_greenlet *g);
/* glibc's own allocator, for records made on the program's behalf: never the program's
 * malloc (see locals.c). */
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
/* Installs the run-info dump's handler (COOP_DUMP_SIGNAL), if one is asked for. */
void shim_signal_init(void);
extern int shim_dump_signal;

/* Settings (settings.c): what COOP_* decides; a bad value stops the program before main. */
struct shim_settings {
    bool patched[FAM_COUNT];
    struct coop_settings core;
    enum coop_log_level log_level;
    int dump_signal;
    int threadpool_size;
    bool file_offload, no_inherit, always_cooperative;
};
int shim_parse_settings(const char *(*get)(const char *name), struct shim_settings *out,
                        char *error, size_t error_size);

/* Thread family glue (thread.c, mutex.c, locals.c, cancel.c). */
void shim_thread_init(void);
void shim_mutex_init(void);
/* From the runtime's first thread on, glibc's SIGSETXID handler runs on the OS thread's
 * record (creds.c). */
void shim_creds_wrap_setxid(void);
void shim_cancel_init(void);
/* The greenlet a pthread_t names, or NULL for a thread coop did not create. */
struct coop_greenlet *shim_greenlet_of(pthread_t t);
/* Whether t named a greenlet that is gone (joined, or ended detached). */
bool shim_greenlet_gone(pthread_t t);
/* Scheduling (sched.c): a new greenlet's policy, priority and CPU affinity from its
 * attributes or its creator (0, or the kernel's error; shim_sched_drop frees what it took
 * if the greenlet is not made), a greenlet's reported into attributes (pthread_getattr_np),
 * and what a greenlet's end frees. */
int shim_sched_for_new(const pthread_attr_t *attr, struct coop_sched *out);
void shim_sched_drop(struct coop_sched *s);
void shim_sched_report(struct coop_greenlet *g, pthread_attr_t *attr);
void shim_sched_exit(struct coop_greenlet *g);
/* What the kernel keeps per OS thread and an exec or a new child inherits, the CPU affinity
 * and the scheduling policy (sched.c): of_caller reads the calling greenlet's (has_*: what
 * it set), for an exec or as a child of its starts with them; lend puts them on the calling
 * OS thread, take_back puts the thread's own back. */
enum shim_lend_for {
    LEND_FOR_EXEC,       /* the caller's thread, for an exec */
    LEND_FOR_CHILD,      /* the thread that starts the caller's child (a pool thread) */
    LEND_FOR_FORKED,     /* a forked child's thread, for good */
};
struct shim_sched_loan {
    enum shim_lend_for purpose;
    bool has_cpus, has_policy;          /* the caller's */
    cpu_set_t cpus;
    int policy;
    struct sched_param param;
    bool lent_cpus, lent_policy;        /* the thread's, while lent */
    pid_t thread;
    cpu_set_t thread_cpus;
    int thread_policy;
    struct sched_param thread_param;
};
void shim_sched_of_caller(struct shim_sched_loan *loan, enum shim_lend_for purpose);
void shim_sched_lend(struct shim_sched_loan *loan);
void shim_sched_take_back(struct shim_sched_loan *loan);
/* Once coop runs the main thread's greenlet: it takes what was set before (sched.c). */
void shim_sched_init(void);
/* At a cancellation point: acts on a pending cancellation of the calling greenlet, if its
 * cancellation is enabled (the unwinding does not return). */
void shim_cancel_point(void);
/* Anywhere a greenlet waited: acts on a pending asynchronous cancellation. */
void shim_async_cancel_point(void);
/* The stack pointer a jump to env lands with; 0 where glibc's pointer mangling is not known. */
struct __jmp_buf_tag;
uintptr_t shim_jmp_sp(const struct __jmp_buf_tag *env);
void shim_locals_init(void);
void shim_stdio_init(void);

/* How many lingering closes (io.c) may hold threadpool threads at once: half the pool (none
 * of a pool of one). */
extern int shim_lingering_closes_max;

/* Family file (file.c): io's wrappers hand read/write calls on plain files here, which
 * run them on the threadpool when COOP_FILE_OFFLOAD is on and call them directly if not. */
extern bool shim_file_offload;
ssize_t shim_file_io(int fd, const struct shim_fd *f, shim_attempt attempt, void *args);

/* Family file, locks (locks.c): fcntl's F_SETLKW or F_OFD_SETLKW for a greenlet. */
struct flock;
int shim_fcntl_lock_wait(int fd, int cmd, struct flock *lock);

/* Family proc (proc.c): COOP_NO_INHERIT, read at start-up, drops coop from LD_PRELOAD. */
void shim_proc_no_inherit(void);

#endif
