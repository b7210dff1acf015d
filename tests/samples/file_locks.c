/*
 * file_locks: a thread waits for a lock on a file that another holder keeps, while a
 * third thread keeps working; the holder lets go only once that worker has done TICKS
 * rounds during the wait. So the program finishes only if the waiting thread leaves the
 * worker running: natively each is an OS thread; under coop, where they may share one
 * OS thread, only if the wait is cooperative (or handed off). Each kind of lock:
 *   flock   flock(2), held by another thread's open file description
 *   ofd     fcntl F_OFD_SETLKW, held likewise
 *   posix   fcntl F_SETLKW, held by a child process (record locks belong to processes)
 *   lockf   lockf(3) F_LOCK, held by a child process
 * Prints one line per kind; exit status 0 when every kind behaved.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/wait.h>

#define TICKS 20

static char path[] = "/tmp/coop-file-locks.XXXXXX";
static _Atomic int ticks, waiting, got_it;
static int release_pipe[2];      /* a byte tells the holder to let go */

static void lock_fd(const char *kind, int fd)
{
    struct flock record = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    int r;
    if (strcmp(kind, "flock") == 0)
        r = flock(fd, LOCK_EX);
    else if (strcmp(kind, "ofd") == 0)
        r = fcntl(fd, F_OFD_SETLKW, &record);
    else if (strcmp(kind, "posix") == 0)
        r = fcntl(fd, F_SETLKW, &record);
    else
        r = lockf(fd, F_LOCK, 0);
    if (r != 0)
        die_errno(kind);
}

static bool shared_by_threads(const char *kind) { return !strcmp(kind, "flock") || !strcmp(kind, "ofd"); }

/* Takes the lock, says so, and keeps it until a byte arrives. */
static void hold(const char *kind, int ready_fd)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        die_errno("open");
    lock_fd(kind, fd);
    if (write(ready_fd, "r", 1) != 1)
        die_errno("write");
    char c;
    if (read(release_pipe[0], &c, 1) != 1)
        die_errno("read");
    close(fd);                   /* lets go of the lock */
}

static const char *holder_kind;
static int holder_ready[2];

static void *holder_thread(void *unused)
{
    (void)unused;
    hold(holder_kind, holder_ready[1]);
    return NULL;
}

static void *waiter(void *kind)
{
    int fd = open(path, O_RDWR);
    if (fd < 0)
        die_errno("open");
    atomic_store(&waiting, 1);
    lock_fd(kind, fd);
    atomic_store(&got_it, 1);
    close(fd);
    return NULL;
}

/* Works while the waiter waits, then tells the holder to let go. */
static void *worker(void *unused)
{
    (void)unused;
    while (!atomic_load(&waiting))
        sleep_ms(1);
    for (int i = 0; i < TICKS; i++) {
        sleep_ms(1);
        atomic_fetch_add(&ticks, 1);
    }
    int during = atomic_load(&got_it) ? -1 : atomic_load(&ticks);
    if (write(release_pipe[1], "go", 1) != 1)
        die_errno("write");
    return (void *)(intptr_t)during;
}

static bool run(const char *kind)
{
    atomic_store(&ticks, 0);
    atomic_store(&waiting, 0);
    atomic_store(&got_it, 0);
    if (pipe(release_pipe) != 0 || pipe(holder_ready) != 0)
        die_errno("pipe");
    pid_t child = -1;
    pthread_t holder, w, k;
    holder_kind = kind;
    if (shared_by_threads(kind)) {
        pthread_create(&holder, NULL, holder_thread, NULL);
    } else if ((child = fork()) == 0) {
        hold(kind, holder_ready[1]);
        _exit(0);
    }
    char c;
    if (read(holder_ready[0], &c, 1) != 1)
        die_errno("read");
    pthread_create(&w, NULL, waiter, (void *)kind);
    pthread_create(&k, NULL, worker, NULL);
    void *during;
    pthread_join(k, &during);
    pthread_join(w, NULL);
    if (child > 0)
        waitpid(child, NULL, 0);
    else
        pthread_join(holder, NULL);
    for (int i = 0; i < 2; i++) {
        close(release_pipe[i]);
        close(holder_ready[i]);
    }
    bool ok = (intptr_t)during == TICKS && atomic_load(&got_it);
    printf("%s: the waiter got the lock after the holder let go; the worker did %s rounds meanwhile\n",
           kind, (intptr_t)during == TICKS ? "all its" : "not all its");
    return ok;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = mkstemp(path);
    if (fd < 0)
        die_errno("mkstemp");
    close(fd);
    bool ok = true;
    static const char *const kinds[] = { "flock", "ofd", "posix", "lockf" };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        ok &= run(kinds[i]);
    unlink(path);
    return ok ? 0 : 1;
}
