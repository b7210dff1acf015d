/*
 * Family file: calls on regular files. epoll cannot watch a regular file (EPERM) and the
 * kernel never reports one as "would block", yet a read that misses the page cache, a
 * write that must wait for dirty pages, an fsync, or an open on a slow or network file
 * system can hold the OS thread for milliseconds, and with it every greenlet of its hub.
 * With COOP_FILE_OFFLOAD=1 such calls run on the threadpool while the caller waits, as
 * gevent's FileObjectThread does.
 *
 * Off by default: on a file in the page cache the call takes about a microsecond and a
 * trip through the pool costs tens of microseconds (figures in the README), so the
 * cure would be slower than the illness for the common case.
 *
 * read, write, readv and writev are io's wrappers (io.c); they send plain files here
 * through shim_file_io. open and openat are interposed even with offloading off: the
 * fd they return may reuse the number of an fd closed inside libc (fclose), so its
 * entry in the fd table is written anew.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

extern void __chk_fail(void) __attribute__((noreturn));
/* FORTIFY's entry points; their declarations go with _FORTIFY_SOURCE, which shim/ is
 * built without. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t len, off_t off, size_t buflen);

bool shim_file_offload;

/* Whether a call on fd (-1: a path) should go to the pool. */
static bool offloaded(int fd)
{
    if (!shim_file_offload || shim_cooperative(FAM_file) == NULL)
        return false;
    if (fd < 0)
        return true;
    struct shim_fd *f = shim_fd(fd);
    return f->known && f->kind == FD_PLAIN;
}

/* One call, packed so a pool thread can make it; errno travels both ways. */
struct call {
    ssize_t (*op)(struct call *c);
    int fd, flags;
    void *buf;
    size_t len;
    off_t off;
    const char *path;
    mode_t mode;
    ssize_t ret;
    int err;
};

static void run(void *p)
{
    struct call *c = p;
    errno = c->err;
    c->ret = c->op(c);
    c->err = errno;
}

static ssize_t offload(struct call *c)
{
    c->err = errno;
    coop_offload(run, c);
    errno = c->err;
    return c->ret;
}

/* --- read and write: the io family's calls on a plain file --- */
struct attempt_call { shim_attempt attempt; void *args; };

static ssize_t op_attempt(struct call *c)
{
    struct attempt_call *a = c->buf;
    return a->attempt(c->fd, a->args, TRY_BLOCKING);
}

ssize_t shim_file_io(int fd, const struct shim_fd *f, shim_attempt attempt, void *args)
{
    /* The program's O_NONBLOCK means nothing to a regular file, but it did ask not to
     * wait: it gets the plain call. */
    if (!shim_file_offload || !f->known || f->nonblock || shim_cooperative(FAM_file) == NULL)
        return attempt(fd, args, TRY_BLOCKING);
    struct attempt_call a = { attempt, args };
    struct call c = { .op = op_attempt, .fd = fd, .buf = &a };
    return offload(&c);
}

/* --- pread, pwrite --- */
static ssize_t op_pread(struct call *c) { return REAL(pread)(c->fd, c->buf, c->len, c->off); }
static ssize_t op_pwrite(struct call *c) { return REAL(pwrite)(c->fd, c->buf, c->len, c->off); }

static ssize_t do_pread(int fd, void *buf, size_t len, off_t off)
{
    if (!offloaded(fd))
        return REAL(pread)(fd, buf, len, off);
    struct call c = { .op = op_pread, .fd = fd, .buf = buf, .len = len, .off = off };
    return offload(&c);
}

static ssize_t do_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (!offloaded(fd))
        return REAL(pwrite)(fd, buf, len, off);
    struct call c = { .op = op_pwrite, .fd = fd, .buf = (void *)buf, .len = len, .off = off };
    return offload(&c);
}

/* off_t is 64 bits on x86_64: the *64 names are the same functions. */
EXPORT ssize_t pread(int fd, void *buf, size_t len, off_t off) { return do_pread(fd, buf, len, off); }
EXPORT ssize_t pread64(int fd, void *buf, size_t len, off_t off) { return do_pread(fd, buf, len, off); }
EXPORT ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) { return do_pwrite(fd, buf, len, off); }
EXPORT ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) { return do_pwrite(fd, buf, len, off); }

/* FORTIFY's versions: glibc implements them on its internal pread, out of reach. */
EXPORT ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
    if (len > buflen)
        __chk_fail();
    return do_pread(fd, buf, len, off);
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
    if (len > buflen)
        __chk_fail();
    return do_pread(fd, buf, len, off);
}

/* --- fsync, fdatasync --- */
static ssize_t op_fsync(struct call *c) { return REAL(fsync)(c->fd); }
static ssize_t op_fdatasync(struct call *c) { return REAL(fdatasync)(c->fd); }

EXPORT int fsync(int fd)
{
    if (!offloaded(fd))
        return REAL(fsync)(fd);
    struct call c = { .op = op_fsync, .fd = fd };
    return (int)offload(&c);
}

EXPORT int fdatasync(int fd)
{
    if (!offloaded(fd))
        return REAL(fdatasync)(fd);
    struct call c = { .op = op_fdatasync, .fd = fd };
    return (int)offload(&c);
}

/* --- open, openat --- */

/* The mode argument is there only when the flags can create a file. */
#define NEEDS_MODE(flags) (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE)

static ssize_t op_openat(struct call *c) { return REAL(openat)(c->fd, c->path, c->flags, c->mode); }
static ssize_t op_openat_2(struct call *c) { return REAL(__openat_2)(c->fd, c->path, c->flags); }

/* A new fd: what the fd table knew of an earlier fd with its number is stale. */
static int opened(int fd, int flags)
{
    if (fd < 0 || !shim_patched[FAM_io])
        return fd;
    struct stat st;
    int saved = errno;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISBLK(st.st_mode))
        shim_fd_opened(fd, S_ISSOCK(st.st_mode) ? FD_SOCKET : FD_POLLABLE, flags);
    else
        shim_fd_opened(fd, FD_PLAIN, flags);
    errno = saved;
    return fd;
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    if (!offloaded(-1))
        return opened(REAL(openat)(dirfd, path, flags, mode), flags);
    struct call c = { .op = op_openat, .fd = dirfd, .path = path, .flags = flags, .mode = mode };
    return opened((int)offload(&c), flags);
}

static int do_openat_2(int dirfd, const char *path, int flags)
{
    if (!offloaded(-1))
        return opened(REAL(__openat_2)(dirfd, path, flags), flags);
    struct call c = { .op = op_openat_2, .fd = dirfd, .path = path, .flags = flags };
    return opened((int)offload(&c), flags);
}

static mode_t mode_arg(int flags, va_list ap) { return NEEDS_MODE(flags) ? va_arg(ap, mode_t) : 0; }

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(dirfd, path, flags, mode);
}

/* On x86-64 the 64 variants are the same calls. */
EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));
EXPORT int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

/* FORTIFY's versions, for flags that need no mode; glibc's own checks them (and aborts
 * the program that passed O_CREAT without a mode). */
EXPORT int __open_2(const char *path, int flags) { return do_openat_2(AT_FDCWD, path, flags); }
EXPORT int __open64_2(const char *path, int flags) { return do_openat_2(AT_FDCWD, path, flags); }
EXPORT int __openat_2(int dirfd, const char *path, int flags) { return do_openat_2(dirfd, path, flags); }
EXPORT int __openat64_2(int dirfd, const char *path, int flags) { return do_openat_2(dirfd, path, flags); }
