/*
 * thread_limits [-s STACK_MIB] [-m MAX] [-w] [-d]: creates threads until pthread_create fails (or
 * MAX of them exist), as a program does when it meets a limit on address space (ulimit -v),
 * on memory mappings or on threads. Each thread touches 64 KiB of its stack, then waits on a
 * condition variable until the main thread lets every one go.
 *
 *   -s STACK_MIB  stack size of each thread (pthread_attr_setstacksize), in MiB; without it
 *                 the default stack
 *   -m MAX        stop after MAX threads (default 100,000)
 *   -w            while out of resources, fork a child and wait for it (waitpid): the
 *                 process must still be able to do so
 *   -d            while out of resources, look up "localhost" (getaddrinfo, /etc/hosts), with
 *                 1 MiB of address space kept back for it until then: what a lookup
 *                 allocates must not depend on how much the threads happened to leave
 *
 * Then it tries once more (the same error must come back), releases and joins every thread it
 * created (each returns its own number), and creates and joins one more thread now that the
 * resources are back. Prints one line per step on stdout, the same wherever the limit lies;
 * the count goes to stderr. Exit status 0 when every step went as expected, 1 otherwise.
 */
#define _GNU_SOURCE
#include "common.h"

#include <netdb.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

enum { STACK_TOUCH = 64 * 1024, LOOKUP_RESERVE = 1 << 20 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t released_cond = PTHREAD_COND_INITIALIZER;
static bool released;
static long started, finished;
static int failures;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "thread_limits: check failed: " __VA_ARGS__);                \
            fputc('\n', stderr);                                                         \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static const char *error_name(int err)
{
    const char *name = strerrorname_np(err);

    return name ? name : "unknown error";
}

static void *worker(void *arg)
{
    volatile char scratch[STACK_TOUCH];

    /* The stack must be usable: write it all, read it back. */
    for (size_t i = 0; i < sizeof scratch; i += 512)
        scratch[i] = (char)i;
    for (size_t i = 0; i < sizeof scratch; i += 512)
        if (scratch[i] != (char)i)
            return NULL;
    pthread_mutex_lock(&lock);
    started++;
    while (!released)
        pthread_cond_wait(&released_cond, &lock);
    finished++;
    pthread_mutex_unlock(&lock);
    return arg;
}

/* Forks a child that exits with status 7 and waits for it. */
static bool fork_and_wait(void)
{
    int status;
    pid_t pid = fork();

    if (pid < 0) {
        fprintf(stderr, "thread_limits: fork: %s\n", strerror(errno));
        return false;
    }
    if (pid == 0)
        _exit(7);
    if (waitpid(pid, &status, 0) != pid) {
        fprintf(stderr, "thread_limits: waitpid: %s\n", strerror(errno));
        return false;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 7;
}

/* Looks up localhost, which /etc/hosts answers: 127.0.0.1 must be among the addresses. */
static bool lookup_localhost(void)
{
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
    bool found = false;
    int err = getaddrinfo("localhost", "80", &hints, &res);

    if (err != 0) {
        fprintf(stderr, "thread_limits: getaddrinfo: %s\n", gai_strerror(err));
        return false;
    }
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
        if (((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
            found = true;
    freeaddrinfo(res);
    return found;
}

int main(int argc, char **argv)
{
    long max = 100000, stack_mib = 0, count = 0;
    bool wait_child = false, lookup = false;
    pthread_attr_t attr;
    pthread_t *threads;
    int c, err = 0;

    while ((c = getopt(argc, argv, "s:m:wd")) != -1) {
        switch (c) {
        case 's': stack_mib = parse_long(optarg, 1, 64 * 1024, "-s"); break;
        case 'm': max = parse_long(optarg, 1, 1000000, "-m"); break;
        case 'w': wait_child = true; break;
        case 'd': lookup = true; break;
        default: die("usage: thread_limits [-s STACK_MIB] [-m MAX] [-w] [-d]");
        }
    }
    /* Everything allocated up front: once the address space is used up, nothing more is. */
    threads = calloc((size_t)max, sizeof *threads);
    if (threads == NULL)
        die_errno("calloc");
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("stack: %s\n", stack_mib ? "the size asked for" : "the default");

    if ((err = pthread_attr_init(&attr)) != 0)
        die("pthread_attr_init: %s", strerror(err));
    if (stack_mib && (err = pthread_attr_setstacksize(&attr, (size_t)stack_mib << 20)) != 0)
        die("pthread_attr_setstacksize: %s", strerror(err));

    void *reserve = lookup ? mmap(NULL, LOOKUP_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
    if (reserve == MAP_FAILED)
        die_errno("mmap");
    uint64_t t0 = now_ns();
    while (count < max) {
        err = pthread_create(&threads[count], &attr, worker, (void *)(intptr_t)(count + 1));
        if (err != 0)
            break;
        count++;
    }
    fprintf(stderr, "thread_limits: %ld threads of %s stack in %.3f s, then %s\n", count,
            stack_mib ? "the given" : "the default", (double)(now_ns() - t0) / 1e9,
            err ? error_name(err) : "the maximum");
    CHECK(count > 0, "not even one thread could be created (%s)", error_name(err));
    if (err != 0) {
        printf("pthread_create failed: %s\n", error_name(err));
        int again = pthread_create(&(pthread_t){ 0 }, &attr, worker, NULL);
        printf("again: %s\n", again == err ? "the same error" : error_name(again));
        CHECK(again == err, "the second try gave %s, the first %s", error_name(again), error_name(err));
        if (again == 0)
            die("a thread was created after all: the test cannot go on");
    } else {
        printf("created the %ld threads asked for\n", max);
    }

    /* The threads wait; each must have started (and touched its stack). */
    for (int i = 0; i < 30000; i++) {
        pthread_mutex_lock(&lock);
        long n = started;
        pthread_mutex_unlock(&lock);
        if (n == count)
            break;
        sleep_ms(1);
    }
    pthread_mutex_lock(&lock);
    CHECK(started == count, "%ld threads of %ld started", started, count);
    pthread_mutex_unlock(&lock);
    printf("every thread created runs\n");

    if (wait_child) {
        bool ok = fork_and_wait();
        printf("fork and waitpid while out of resources: %s\n", ok ? "ok" : "failed");
        CHECK(ok, "fork and waitpid while out of resources");
    }

    if (lookup) {
        munmap(reserve, LOOKUP_RESERVE);
        bool ok = lookup_localhost();
        printf("getaddrinfo while out of resources: %s\n", ok ? "ok" : "failed");
        CHECK(ok, "getaddrinfo(localhost) while out of resources");
    }

    pthread_mutex_lock(&lock);
    released = true;
    pthread_cond_broadcast(&released_cond);
    pthread_mutex_unlock(&lock);
    long bad = 0;
    for (long i = 0; i < count; i++) {
        void *result;
        int e = pthread_join(threads[i], &result);
        if (e != 0 || result != (void *)(intptr_t)(i + 1))
            bad++;
    }
    CHECK(bad == 0 && finished == count, "%ld joins went wrong, %ld of %ld threads finished", bad,
          finished, count);
    printf("joined every thread, each returned its number\n");

    pthread_t again;
    void *result = NULL;
    err = pthread_create(&again, &attr, worker, (void *)(intptr_t)-1);
    if (err == 0)
        err = pthread_join(again, &result);
    CHECK(err == 0 && result == (void *)(intptr_t)-1, "a thread after the joins: %s", error_name(err));
    printf("a new thread after the joins: %s\n", err == 0 ? "ok" : error_name(err));
    pthread_attr_destroy(&attr);
    free(threads);
    return failures ? 1 : 0;
}
