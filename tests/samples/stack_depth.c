/*
 * stack_depth: a thread's stack is as large as its attributes say, no larger: for each stack
 * size and guard size, a child process creates such a thread, which recurses until it runs
 * into its guard, and the child dies of SIGSEGV. Printed per case:
 *
 *   ok NAME: ended by SIGSEGV in its guard       (or FAIL NAME: why)
 *   depth: NAME FRAMES frames of BYTES bytes      how deep it got
 *
 * and exits 1 when a check failed. The depth lines differ by a few frames between two
 * libraries that lay out a stack differently; test_threads_posix wants the depth natively and
 * under coop within a page of each other. The sizes: PTHREAD_STACK_MIN, 64 KiB, 1 MiB with a
 * 64 KiB guard, 8 MiB (glibc's default, asked for explicitly), and a 64 KiB stack the
 * program supplies with a page it protects below.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

enum { PAD = 480 };

struct progress {
    long depth;
    uintptr_t first, second;     /* frame addresses at depths 1 and 2 */
};

static volatile struct progress *progress;
static volatile long never = LONG_MAX;     /* a way out the compiler cannot rule out */

static __attribute__((noinline)) long recurse(long n)
{
    volatile char pad[PAD];

    pad[0] = (char)n;
    pad[PAD - 1] = 1;
    progress->depth = n;
    if (n == never)
        return n;
    if (n <= 2)
        *(n == 1 ? &progress->first : &progress->second) = (uintptr_t)pad;
    return recurse(n + 1) + pad[0];
}

static void *body(void *arg)
{
    (void)arg;
    recurse(1);
    return NULL;
}

/* The child: a thread with these attributes, recursing; never returns normally. */
static void run_thread(size_t size, size_t guard, bool supplied)
{
    pthread_attr_t attr;
    pthread_t t;

    pthread_attr_init(&attr);
    if (supplied) {
        char *block = mmap(NULL, size + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (block == MAP_FAILED || mprotect(block, guard, PROT_NONE) != 0)
            _exit(3);
        pthread_attr_setstack(&attr, block + guard, size);
    } else {
        pthread_attr_setstacksize(&attr, size);
        pthread_attr_setguardsize(&attr, guard);
    }
    if (pthread_create(&t, &attr, body, NULL) != 0)
        _exit(4);
    pthread_join(t, NULL);
    _exit(0);
}

static void check_depth(const char *name, size_t size, size_t guard, bool supplied)
{
    pid_t pid;
    int status;
    bool ok;

    memset((void *)progress, 0, sizeof *progress);
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0)
        run_thread(size, guard, supplied);
    if (waitpid(pid, &status, 0) != pid)
        die_errno("waitpid");
    ok = (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
         || failf("the child ended with status 0x%x, not by SIGSEGV", status);
    report_result(name, ok, "ended by SIGSEGV in its guard");
    printf("depth: %s %ld frames of %ld bytes\n", name, progress->depth,
           (long)(progress->first - progress->second));
}

int main(void)
{
    progress = mmap(NULL, sizeof *progress, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (progress == MAP_FAILED)
        die_errno("mmap");
    check_depth("stack_min", PTHREAD_STACK_MIN, 4096, false);
    check_depth("stack_64k", 64 << 10, 4096, false);
    check_depth("stack_1m_guard_64k", 1 << 20, 64 << 10, false);
    check_depth("stack_8m", 8 << 20, 4096, false);
    check_depth("stack_supplied_64k", 64 << 10, 4096, true);
    printf("%s\n", failures == 0 ? "stack_depth: all checks passed" : "stack_depth: checks failed");
    return failures == 0 ? 0 : 1;
}
