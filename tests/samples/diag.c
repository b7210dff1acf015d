/*
 * diag MODE: small programs that coop's diagnostics must describe (tests/integration/
 * test_diagnostics.sh runs them under cooprun and checks the text).
 *   dump       a sleeper, a waiter on a condition variable, a reader of stdin and main
 *              joining the reader; prints "ready" once all wait, so the test can send the
 *              dump signal, and ends when stdin does
 *   spin       one thread computes while another sleeps in small steps, until the other has
 *              run twice (preempted) or the blocking monitor's report about it is in stderr
 *              (a file; else for 500 ms)
 *   spin-in-libc       the same, the computation in a comparator called by qsort
 *   spin-holding-file  the same, holding stdout's lock (flockfile)
 *   spin-in-malloc     a thread calls malloc_trim, which holds malloc's lock, over and over
 *              until the monitor has reported it EPISODES times, sleeping 1 ms after each
 *              report (60 s at most)
 *   deadlock   two threads lock two mutexes in opposite orders
 *   lost       a thread waits on a condition variable nobody signals; main joins it
 *   alarm      the same with alarm(1) armed: SIGALRM's default action ends the process
 *   overflow   a thread recurses without bound
 *   idle       a server idle in accept for 1 s (with a second thread asleep), then exits 0
 *   company    main waits alone in a read of stdin, then starts a thread and computes until
 *              that thread has slept 20 ms, then exits 0
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t first = PTHREAD_MUTEX_INITIALIZER, second = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t both_hold_one;     /* deadlock: each holds its first mutex */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *sleeper(void *arg)
{
    pthread_setname_np(pthread_self(), "sleeper");
    sleep((unsigned)(long)arg);
    return NULL;
}

static void *cond_waiter(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "waiter");
    pthread_mutex_lock(&first);
    pthread_cond_wait(&never, &first);
    pthread_mutex_unlock(&first);
    return NULL;
}

/* How many times stderr, a regular file, holds text yet (read without any blocking call). */
static int stderr_count(int fd, const char *text)
{
    static char buf[1 << 18];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    int count = 0;
    for (const char *at = strstr(buf, text); at != NULL; at = strstr(at + 1, text))
        count++;
    return count;
}

static bool stderr_holds(int fd, const char *text) { return stderr_count(fd, text) > 0; }

static _Atomic int ticks;     /* the ticker's, since the computation began */

/* Computes until the ticker has ticked twice meanwhile (the computation was preempted) or
 * the blocking monitor's report naming frame is in stderr, a regular file (it was not); 60 s
 * at most, a guard against a hang. Elsewhere, 500 ms. */
static void compute_until_reported(const char *frame)
{
    struct stat st;
    int err = fstat(2, &st) == 0 && S_ISREG(st.st_mode) ? open("/proc/self/fd/2", O_RDONLY | O_CLOEXEC) : -1;
    volatile unsigned long n = 0;
    ticks = 0;
    for (double t0 = now(), last = t0; err >= 0 ? now() - t0 < 60 && ticks < 2 : now() - t0 < 0.5;) {
        n++;
        if (err >= 0 && now() - last > 0.01) {
            if (stderr_holds(err, frame))
                break;
            last = now();
        }
    }
    if (err >= 0)
        close(err);
}

static void *spinner(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "spinner");
    compute_until_reported("at spinner+0x");
    return NULL;
}

/* Reads stdin until it ends. */
static void *stdin_reader(void *arg)
{
    (void)arg;
    char buf[64];
    while (read(0, buf, sizeof buf) > 0)
        ;
    return NULL;
}

static int compare_slowly(const void *a, const void *b)
{
    compute_until_reported("at compare_slowly+0x");
    return *(const int *)a - *(const int *)b;
}

static void *sorter(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "sorter");
    int two[2] = { 2, 1 };
    qsort(two, 2, sizeof two[0], compare_slowly);
    return NULL;
}

static void *file_locker(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "locker");
    flockfile(stdout);
    compute_until_reported("at file_locker+0x");
    funlockfile(stdout);
    return NULL;
}

enum { EPISODES = 16, BLOCKS = 512, BLOCK_SIZE = 8192 };

/* malloc_trim holds the arena's lock while it gives every free page back (a madvise each):
 * the monitor's sample nearly always lands under that lock. */
static void *allocator(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "allocator");
    int err = open("/proc/self/fd/2", O_RDONLY | O_CLOEXEC);
    static void *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++)
        blocks[i] = malloc(BLOCK_SIZE);
    for (int i = 0; i < BLOCKS; i += 2)     /* free ones between used ones: they stay apart */
        free(blocks[i]);
    double t0 = now();
    for (int episode = 1; err >= 0 && episode <= EPISODES && now() - t0 < 60; episode++) {
        while (stderr_count(err, "\"allocator\" has kept its hub") < episode && now() - t0 < 60)
            malloc_trim(0);
        usleep(1000);
    }
    for (int i = 1; i < BLOCKS; i += 2)
        free(blocks[i]);
    if (err >= 0)
        close(err);
    return NULL;
}

static void *ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        usleep(50000);
        ticks++;
    }
    return NULL;
}

static void *lock_first_then_second(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&first);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&second);
    return NULL;
}

static void *lock_second_then_first(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&second);
    pthread_barrier_wait(&both_hold_one);
    pthread_mutex_lock(&first);
    return NULL;
}

/* Deep enough to run into any stack; the limit keeps the compiler from calling it infinite. */
static int recurse(long depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    return depth > 0 ? recurse(depth - 1) + frame[0] : 0;
}

static void *overflower(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "deep");
    return (void *)(long)recurse(1L << 40);
}

static atomic_bool napped;

static void *napper(void *unused)
{
    usleep(20000);
    atomic_store(&napped, true);
    return unused;
}

static void *acceptor(void *arg)
{
    int fd = (int)(long)arg;
    accept(fd, NULL, NULL);       /* nobody connects */
    return NULL;
}

static void spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
    if (pthread_create(t, NULL, fn, arg) != 0) {
        perror("pthread_create");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    pthread_t a, b;
    if (strcmp(mode, "dump") == 0) {
        pthread_t c;
        spawn(&a, sleeper, (void *)3600L);
        spawn(&b, cond_waiter, NULL);
        spawn(&c, stdin_reader, NULL);
        usleep(100000);
        printf("ready\n");
        fflush(stdout);
        pthread_join(c, NULL);     /* the sleeper and the waiter are left behind; exit ends them */
        return 0;
    }
    if (strcmp(mode, "spin-in-malloc") == 0) {
        spawn(&a, allocator, NULL);
        pthread_join(a, NULL);
        return 0;
    }
    if (strncmp(mode, "spin", 4) == 0) {
        void *(*computer)(void *) = strcmp(mode, "spin-in-libc") == 0        ? sorter
                                    : strcmp(mode, "spin-holding-file") == 0 ? file_locker
                                                                            : spinner;
        spawn(&a, ticker, NULL);
        usleep(50000);
        spawn(&b, computer, NULL);
        pthread_join(b, NULL);
        pthread_join(a, NULL);
        return 0;
    }
    if (strcmp(mode, "deadlock") == 0) {
        pthread_barrier_init(&both_hold_one, NULL, 2);
        spawn(&a, lock_first_then_second, NULL);
        spawn(&b, lock_second_then_first, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        return 0;
    }
    if (strcmp(mode, "lost") == 0) {
        spawn(&a, cond_waiter, NULL);
        pthread_join(a, NULL);
        return 0;
    }
    if (strcmp(mode, "alarm") == 0) {     /* the lost wakeup, but SIGALRM's default ends it */
        alarm(1);
        spawn(&a, cond_waiter, NULL);
        pthread_join(a, NULL);
        return 0;
    }
    if (strcmp(mode, "overflow") == 0) {
        spawn(&a, overflower, NULL);
        pthread_join(a, NULL);
        return 0;
    }
    if (strcmp(mode, "idle") == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 8) != 0) {
            perror("listen");
            return 1;
        }
        spawn(&a, acceptor, (void *)(long)fd);
        spawn(&b, sleeper, (void *)1L);
        pthread_join(b, NULL);
        printf("idle done\n");
        return 0;
    }
    if (strcmp(mode, "company") == 0) {
        char c;
        if (read(0, &c, 1) != 1)        /* alone: the call is libc's, asleep in the kernel */
            return 1;
        spawn(&a, napper, NULL);
        while (!atomic_load(&napped))
            ;
        pthread_join(a, NULL);
        printf("company done\n");
        return 0;
    }
    fprintf(stderr, "usage: diag dump|spin|spin-in-libc|spin-holding-file|deadlock|lost|alarm|overflow|idle|company\n");
    return 2;
}
