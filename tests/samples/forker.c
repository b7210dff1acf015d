/*
 * forker: a thread forks while other threads serve and use TCP connections.
 *
 * The parent runs an echo server (a thread per connection) and a client thread that keeps
 * doing round trips through it. A third thread forks. The child, which has only the
 * forking thread, starts CHILD_THREADS threads that each sleep, connect to the parent's
 * server and check ECHOES round trips, and pass a token around a pipe ring, and ends; once
 * they are done another thread forks a grandchild, whose raise(SIGTERM) must kill it, and
 * exits with status 42 when everything worked. The parent collects that status with waitpid while its
 * client goes on. Its server kept answering meanwhile by construction: every echo the child
 * checked came from it while the forking thread waited.
 *
 * Output (identical from run to run when all is well):
 *   child: 4 threads, 40 echoes, 4 sleeps, pipe ring ok
 *   child: after its forking thread ended, a grandchild's raise(SIGTERM) killed it: yes
 *   waitpid: exited with status 42
 *   parent: kept serving while the child ran
 * and on stderr the parent's longest round trip while the child ran.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <sys/wait.h>

enum { CHILD_THREADS = 4, ECHOES = 10, SLEEP_MS = 30 };

static int port;
static _Atomic bool stop_client, child_running;
static _Atomic long trips_during_child;
static _Atomic uint64_t worst_ns;

static int connect_loopback(void)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die_errno("connect");
    return fd;
}

static bool round_trip(int fd, const char *msg)
{
    char buf[64];
    size_t len = strlen(msg), got = 0;
    if (write(fd, msg, len) != (ssize_t)len)
        return false;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return memcmp(buf, msg, len) == 0;
}

/* --- the parent's server and client --- */
static void *serve_one(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        if (write(fd, buf, (size_t)n) != n)
            break;
    close(fd);
    return NULL;
}

static void *server(void *arg)
{
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static void *client(void *arg)
{
    (void)arg;
    int fd = connect_loopback();
    while (!stop_client) {
        uint64_t t0 = now_ns();
        if (!round_trip(fd, "parent ping"))
            die("parent round trip failed");
        uint64_t took = now_ns() - t0;
        if (child_running) {
            trips_during_child++;
            if (took > worst_ns)
                worst_ns = took;
        }
        sleep_ms(2);
    }
    close(fd);
    return NULL;
}

/* --- the child --- */
static int ring[CHILD_THREADS][2];
static _Atomic int echoes, sleeps, ring_ok;

static void *child_thread(void *arg)
{
    long i = (long)arg;
    uint64_t t0 = now_ns();
    sleep_ms(SLEEP_MS);
    if (now_ns() - t0 >= SLEEP_MS * 1000000ull)
        sleeps++;
    int fd = connect_loopback();
    char msg[32];
    for (int k = 0; k < ECHOES; k++) {
        snprintf(msg, sizeof msg, "child %ld echo %d", i, k);
        if (round_trip(fd, msg))
            echoes++;
    }
    close(fd);
    /* A token goes round the ring of pipes: thread i reads from ring[i], writes to ring[i+1]. */
    char token;
    if (i == 0 && write(ring[1][1], "t", 1) != 1)
        return NULL;
    if (read(ring[i][0], &token, 1) == 1 && token == 't') {
        if (i != 0 && write(ring[(i + 1) % CHILD_THREADS][1], "t", 1) != 1)
            return NULL;
        if (i == 0)
            ring_ok = 1;
    }
    return NULL;
}

/* In the child, after the forking thread has ended: forks again, and the grandchild's
 * raise(SIGTERM) must kill it. */
static bool grandchild_raise_kills(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGTERM);
        _exit(3);
    }
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM;
}

static pthread_t child_threads[CHILD_THREADS];

/* Ends the child once its threads are done; the forking thread has ended before. */
static void *child_finisher(void *arg)
{
    (void)arg;
    for (int i = 0; i < CHILD_THREADS; i++)
        pthread_join(child_threads[i], NULL);
    printf("child: %d threads, %d echoes, %d sleeps, pipe ring %s\n", CHILD_THREADS, echoes, sleeps,
           ring_ok ? "ok" : "broken");
    bool killed = grandchild_raise_kills();
    printf("child: after its forking thread ended, a grandchild's raise(SIGTERM) killed it: %s\n",
           killed ? "yes" : "no");
    fflush(stdout);
    _exit(echoes == CHILD_THREADS * ECHOES && sleeps == CHILD_THREADS && ring_ok && killed ? 42 : 1);
}

/* The forking thread starts the child's threads and ends: the others finish the child. */
static int child_main(void)
{
    pthread_t finisher;
    for (int i = 0; i < CHILD_THREADS; i++)
        if (pipe(ring[i]) != 0)
            return 1;
    for (long i = 0; i < CHILD_THREADS; i++)
        if (pthread_create(&child_threads[i], NULL, child_thread, (void *)i) != 0)
            return 1;
    if (pthread_create(&finisher, NULL, child_finisher, NULL) != 0)
        return 1;
    pthread_exit(NULL);
}

static void *forker(void *arg)
{
    (void)arg;
    sleep_ms(100);
    fflush(stdout);
    child_running = true;
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0)
        _exit(child_main());
    int status;
    pid_t r = waitpid(pid, &status, 0);
    child_running = false;
    if (r != pid)
        die_errno("waitpid");
    if (WIFEXITED(status))
        printf("waitpid: exited with status %d\n", WEXITSTATUS(status));
    else
        printf("waitpid: status 0x%x\n", status);
    return (void *)(intptr_t)(WIFEXITED(status) && WEXITSTATUS(status) == 42);
}

int main(void)
{
    struct server_options o = { .port = 0, .backlog = 128 };
    setvbuf(stdout, NULL, _IOLBF, 0);
    int listener = listen_loopback(&o, 0);
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    port = ntohs(addr.sin_port);

    pthread_t srv, cli, frk;
    pthread_create(&srv, NULL, server, (void *)(intptr_t)listener);
    pthread_create(&cli, NULL, client, NULL);
    pthread_create(&frk, NULL, forker, NULL);
    void *ok;
    pthread_join(frk, &ok);
    stop_client = true;
    pthread_join(cli, NULL);
    printf("parent: %s while the child ran\n", ok ? "kept serving" : "did NOT serve");
    fprintf(stderr, "parent: %ld round trips of its own client while the child ran, longest %.1f ms\n",
            (long)trips_during_child, worst_ns / 1e6);
    return ok ? 0 : 1;
}
