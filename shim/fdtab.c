/*
 * What the shim knows of each fd: whether it is a socket (its data calls take
 * MSG_DONTWAIT), something else epoll can watch, or a plain file that never blocks; the
 * program's own O_NONBLOCK; whether it is open for reading and for writing; its
 * SO_RCVTIMEO/SO_SNDTIMEO; and whether its SO_LINGER makes close wait. coop never changes a
 * file description's flags, so the program's view is simply the truth, cached here so the
 * fast path needs no extra system call. An fd is looked at the first time it is used, and
 * forgotten when it is closed, replaced or created anew through a wrapper.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "shim.h"

#define MAX_TRACKED (1 << 20)

static struct shim_fd *table;
static int table_len;
static struct shim_fd untracked;

static void table_init(void)
{
    struct rlimit rl;
    rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_max : 65536;
    if (n == RLIM_INFINITY || n > MAX_TRACKED)
        n = MAX_TRACKED;
    void *p = mmap(NULL, (size_t)n * sizeof *table, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
        table = p;
        table_len = (int)n;
    }
}

static int64_t timeout_of(int fd, int option)
{
    struct timeval tv;
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, option, &tv, &len) != 0)
        return 0;
    return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
}

static bool lingers_of(int fd)
{
    struct linger l;
    socklen_t len = sizeof l;
    return getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 && shim_linger_waits(&l);
}

/* A fresh entry from the fd's file status flags. */
static void set_flags(struct shim_fd *f, int flags)
{
    int mode = flags & O_PATH ? -1 : flags & O_ACCMODE;
    *f = (struct shim_fd){ .known = 1, .nonblock = flags & O_NONBLOCK,
                           .no_read = mode != O_RDONLY && mode != O_RDWR,
                           .no_write = mode != O_WRONLY && mode != O_RDWR };
}

static void classify(struct shim_fd *f, int fd)
{
    struct stat st;
    int flags = REAL(fcntl)(fd, F_GETFL);
    if (flags < 0 || fstat(fd, &st) != 0) {
        *f = (struct shim_fd){ .kind = FD_PLAIN };   /* not open: the real call says so */
        return;
    }
    set_flags(f, flags);
    if (S_ISCHR(st.st_mode))
        f->nowait = NOWAIT_REFUSED;      /* terminals and devices: poll first */
    if (S_ISSOCK(st.st_mode)) {
        f->kind = FD_SOCKET;
        f->timeout[SHIM_IN] = timeout_of(fd, SO_RCVTIMEO);
        f->timeout[SHIM_OUT] = timeout_of(fd, SO_SNDTIMEO);
        f->lingers = lingers_of(fd);
    } else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) {
        f->kind = FD_PLAIN;
    } else {
        f->kind = FD_POLLABLE;   /* pipes, terminals, eventfd, timerfd, epoll... */
    }
}

/* In a vfork child the fds are its own copies: the table (the parent's) is neither read
 * nor written there. */
struct shim_fd *shim_fd(int fd)
{
    if (table == NULL)
        table_init();
    if (fd < 0 || fd >= table_len || shim_vfork_child) {
        classify(&untracked, fd);
        return &untracked;
    }
    struct shim_fd *f = &table[fd];
    if (!f->known)
        classify(f, fd);
    return f;
}

void shim_fd_opened(int fd, enum shim_fd_kind kind, int flags)
{
    if (shim_vfork_child)
        return;
    coop_fd_forget(fd);
    if (table == NULL)
        table_init();
    if (fd >= 0 && fd < table_len) {
        set_flags(&table[fd], flags);
        table[fd].kind = (uint8_t)kind;
    }
}

void shim_fd_created(int fd, enum shim_fd_kind kind, bool nonblock)
{
    shim_fd_opened(fd, kind, O_RDWR | (nonblock ? O_NONBLOCK : 0));
}

void shim_fd_copied(int from, int to)
{
    if (shim_vfork_child)
        return;
    coop_fd_forget(to);
    if (to >= 0 && to < table_len)
        table[to] = *shim_fd(from);
}

void shim_fd_range_closed(unsigned first, unsigned last)
{
    for (unsigned fd = first; fd <= last && fd < (unsigned)table_len; fd++)
        if (table[fd].known && !coop_fd_is_runtime((int)fd))
            shim_fd_closed((int)fd);
}

bool shim_fd_lingers(int fd)
{
    return fd >= 0 && fd < table_len && !shim_vfork_child && table[fd].known && table[fd].lingers;
}

void shim_fd_closed(int fd)
{
    if (shim_vfork_child)
        return;
    coop_fd_forget(fd);
    if (fd >= 0 && fd < table_len)
        table[fd].known = 0;
}
