/* What every wrapper file shares: the real functions, the families, the fd facts, and the
 * loop that turns a blocking call into a cooperative one. */
#ifndef COOP_SHIM_H
#define COOP_SHIM_H

#include <errno.h>
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

/* The calling greenlet when a call of this family should park it, NULL when the call
 * should go to libc unchanged: family off, runtime code, or no other greenlet to run.
 * Inline: every wrapper asks first. */
static inline struct coop_greenlet *shim_cooperative(enum shim_family family)
{
    if (!shim_patched[family])
        return NULL;
    struct coop_greenlet *g = coop_self();
    return g != NULL && !coop_alone() ? g : NULL;
}

/* What the shim knows of an fd; see fdtab.c. */
enum shim_fd_kind { FD_PLAIN, FD_SOCKET, FD_POLLABLE };
struct shim_fd {
    uint8_t known;
    uint8_t kind;
    bool nonblock;           /* the program's own O_NONBLOCK */
    int64_t timeout[2];      /* SO_RCVTIMEO, SO_SNDTIMEO in ns; 0 = none */
};
struct shim_fd *shim_fd(int fd);
void shim_fd_created(int fd, enum shim_fd_kind kind, bool nonblock);
void shim_fd_copied(int from, int to);
void shim_fd_closed(int fd);

/* A call on an fd, retried until it stops failing with EAGAIN. dontwait asks for
 * MSG_DONTWAIT (sockets' data calls support it). */
typedef ssize_t (*shim_attempt)(int fd, void *args, bool dontwait);
enum { SHIM_IN = 0, SHIM_OUT = 1 };
ssize_t shim_blocking(int fd, int dir, bool has_dontwait, shim_attempt attempt, void *args);
/* An output call: write/writev (is_write) or send/sendto/sendmsg with flags. */
struct shim_out {
    struct msghdr msg;
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
/* An owner id for recursive and error-checking locks: a tid, or a greenlet's id with
 * bit 30 set (tids stay below 2^22). */
int shim_owner_id(void);

/* Deadlines from the time arguments of libc calls. */
int64_t shim_deadline_after(const struct timespec *rel);
int64_t shim_deadline_at(clockid_t clock, const struct timespec *abs);
int64_t shim_deadline_ms(int timeout_ms);
/* The deadline of a pthread-style absolute timeout, or EINVAL for a bad one. */
int shim_abs_deadline(clockid_t clock, const struct timespec *abstime, int64_t *deadline);
struct timespec shim_remaining(int64_t deadline);

/* Signals: whether handled ones interrupt cooperative waits (see signal.c). */
void shim_signal_target(struct coop_greenlet *g, int sig);
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
    bool file_offload, no_inherit;
};
int shim_parse_settings(const char *(*get)(const char *name), struct shim_settings *out,
                        char *error, size_t error_size);

/* Thread family glue (thread.c, locals.c). */
void shim_thread_init(void);
void shim_locals_init(void);
void shim_stdio_init(void);

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
