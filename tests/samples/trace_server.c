/*
 * trace_server: a small server for tests/integration/test_trace.sh, whose timeline
 * (cooprun --trace) must show three named threads, a mutex handed from one to another and
 * a sleep. It prints "mutex ADDRESS" and then "listening on PORT" once "holder" holds the
 * mutex; "acceptor" answers each line of each connection with "ok N" (N counts the lines
 * so far, under the mutex). "holder" keeps the mutex until the first line has arrived,
 * and HOLD_US more, so the first answer waits for the mutex to be handed over (under coop,
 * always: posting the semaphore does not switch, so "acceptor" is parked on the mutex
 * before "holder" runs again); "sleeper" sleeps SLEEP_US once. A line "quit" ends the
 * server with status 0; otherwise it serves until a signal ends it. "trace_server chdir"
 * first moves to /, as daemons do.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HOLD_US 50000
#define SLEEP_US 200000

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long lines;
static sem_t holding, first_line;
static int listener;

static void *holder(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "holder");
    pthread_mutex_lock(&counter_lock);
    sem_post(&holding);
    sem_wait(&first_line);
    usleep(HOLD_US);
    pthread_mutex_unlock(&counter_lock);
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "sleeper");
    usleep(SLEEP_US);
    return NULL;
}

/* The next line of fd into line (its newline dropped), with plain reads (stdio would
 * keep its lock through a wait): false at the end or on an error. */
static int read_line(int fd, char *line, size_t size)
{
    size_t len = 0;
    char c;
    while (read(fd, &c, 1) == 1) {
        if (c == '\n') {
            line[len] = '\0';
            return 1;
        }
        if (len < size - 1)
            line[len++] = c;
    }
    return 0;
}

/* Answers the lines of one connection; false once it has read "quit". */
static int serve(int fd)
{
    char line[256];
    int more = 1;
    while (more && read_line(fd, line, sizeof line)) {
        more = strcmp(line, "quit") != 0;
        if (lines == 0)
            sem_post(&first_line);
        pthread_mutex_lock(&counter_lock);
        unsigned long n = ++lines;
        pthread_mutex_unlock(&counter_lock);
        char reply[32];
        int len = snprintf(reply, sizeof reply, "ok %lu\n", n);
        if (write(fd, reply, (size_t)len) != len)
            break;
    }
    close(fd);
    return more;
}

static void *acceptor(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "acceptor");
    int fd;
    while ((fd = accept(listener, NULL, NULL)) >= 0 && serve(fd))
        ;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "chdir") == 0 && chdir("/") != 0) {
        perror("trace_server: chdir");
        return 1;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, len) != 0 || listen(listener, 16) != 0
        || getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
        perror("trace_server: listen");
        return 1;
    }
    sem_init(&holding, 0, 0);
    sem_init(&first_line, 0, 0);
    pthread_t threads[3];
    pthread_create(&threads[0], NULL, holder, NULL);
    sem_wait(&holding);
    pthread_create(&threads[1], NULL, sleeper, NULL);
    pthread_create(&threads[2], NULL, acceptor, NULL);
    printf("mutex %p\nlistening on %d\n", (void *)&counter_lock, ntohs(addr.sin_port));
    fflush(stdout);
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);
    return 0;
}
