/*
 * lingering_close: a thread closes its end of a TCP connection with SO_LINGER on, which makes
 * the last close wait until the peer has taken every byte (or the linger time is up), while
 * the bytes still fill the connection: the reader of the other end starts reading only once
 * the closer says it is about to close. Natively each is an OS thread, and close returns once
 * the reader has drained the connection. Under coop, where they may share one OS thread, the
 * same only if the close leaves the reader running; a close that held the thread would give
 * up after LINGER_S, and the reader would find it returned before its first read.
 * Prints a line per check; exit status 0 when all hold.
 */
#define _GNU_SOURCE
#include "common.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

enum { LINGER_S = 10, READER_BUFFER = 4096, CHUNK = 65536 };

static int closer_fd, reader_fd;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t announced = PTHREAD_COND_INITIALIZER;
static bool closing;                  /* under lock: the closer is about to close */
static atomic_bool closed;            /* the closer's close has returned */
static long sent, received;
static int close_result = -2, close_errno;
static bool read_while_closing;

/* Fills the connection until the kernel takes no more (the reader reads nothing yet), then
 * closes with SO_LINGER on. */
static void *closer(void *arg)
{
    static char chunk[CHUNK];
    struct linger linger = { .l_onoff = 1, .l_linger = LINGER_S };
    ssize_t n;

    (void)arg;
    if (setsockopt(closer_fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger) != 0)
        die_errno("setsockopt SO_LINGER");
    while ((n = send(closer_fd, chunk, sizeof chunk, MSG_DONTWAIT)) > 0)
        sent += n;
    if (errno != EAGAIN)
        die_errno("send");
    pthread_mutex_lock(&lock);
    closing = true;
    pthread_cond_signal(&announced);
    pthread_mutex_unlock(&lock);
    close_result = close(closer_fd);
    close_errno = errno;
    atomic_store(&closed, true);
    return NULL;
}

static void *reader(void *arg)
{
    static char buf[CHUNK];
    ssize_t n;

    (void)arg;
    pthread_mutex_lock(&lock);
    while (!closing)
        pthread_cond_wait(&announced, &lock);
    pthread_mutex_unlock(&lock);
    while ((n = read(reader_fd, buf, sizeof buf)) > 0) {
        if (received == 0)
            read_while_closing = !atomic_load(&closed);
        received += n;
    }
    if (n < 0)
        die_errno("read");
    return NULL;
}

/* A connection over loopback: closer_fd the accepted end, reader_fd the connecting one, whose
 * small receive buffer (set before connecting) the closer's bytes overflow. */
static void connect_pair(void)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    int small = READER_BUFFER, listener = socket(AF_INET, SOCK_STREAM, 0);

    reader_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || reader_fd < 0)
        die_errno("socket");
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 1) != 0
        || getsockname(listener, (struct sockaddr *)&addr, &len) != 0)
        die_errno("listen");
    if (setsockopt(reader_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) != 0)
        die_errno("setsockopt SO_RCVBUF");
    if (connect(reader_fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die_errno("connect");
    if ((closer_fd = accept(listener, NULL, NULL)) < 0)
        die_errno("accept");
    close(listener);
}

static bool check(bool ok, const char *what)
{
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    return ok;
}

int main(void)
{
    pthread_t threads[2];
    bool ok = true;

    connect_pair();
    if (pthread_create(&threads[0], NULL, reader, NULL) != 0 || pthread_create(&threads[1], NULL, closer, NULL) != 0)
        die("pthread_create failed");
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    if (close_result != 0)
        printf("close: %d (%s)\n", close_result, strerror(close_errno));
    ok &= check(close_result == 0, "close with SO_LINGER returned 0");
    ok &= check(sent > READER_BUFFER && received == sent, "the reader got every byte sent, more than its buffer holds");
    ok &= check(read_while_closing, "the reader's first read came while close still waited");
    return ok ? 0 : 1;
}
