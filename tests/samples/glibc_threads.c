/*
 * glibc_threads: threads that glibc starts by itself, not through pthread_create, call the
 * program back, and the program's threads wait for those calls. One line per check (ok,
 * FAIL, skip; checks.h); exits 1 when a check failed.
 *
 *   timer   a SIGEV_THREAD timer's callback wakes a condition variable's waiter, a
 *           semaphore's and a pipe's reader, 50 times each
 *   aio     eight POSIX AIO reads, each told to a SIGEV_THREAD callback: every byte right
 *   gai     getaddrinfo_a's lookups (its own threads call getaddrinfo), told to a callback
 *   mq      a message queue's SIGEV_THREAD notification, whose callback receives the message
 *           (skipped where a sandbox forbids message queues or netlink sockets)
 *
 * Under coop these threads are not greenlets (glibc creates them with its internal call):
 * what they call reaches coop's wrappers from OS threads that no hub runs, and the waits
 * they end are greenlets' waits. Nothing is timed: each wait ends when its count is reached.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <aio.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netdb.h>
#include <pthread.h>
#include <semaphore.h>

enum { TICKS = 50, READS = 8, READ_SIZE = 16 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int ticks, reads_told, lookups_told, messages_told;
static sem_t tick_sem;
static int tick_pipe[2];
static char message[32];

static void count(int *counter)
{
    pthread_mutex_lock(&lock);
    (*counter)++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

/* A callback that counts the notification its sigevent points at. */
static void on_notified(union sigval counter)
{
    count(counter.sival_ptr);
}

static void wait_count(const int *counter, int at_least)
{
    pthread_mutex_lock(&lock);
    while (*counter < at_least)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
}

static void on_tick(union sigval unused)
{
    (void)unused;
    count(&ticks);
    sem_post(&tick_sem);
    if (write(tick_pipe[1], "t", 1) != 1)
        die_errno("write");
}

static void *wait_ticks_by_condition(void *unused)
{
    (void)unused;
    wait_count(&ticks, TICKS);
    return NULL;
}

static void *wait_ticks_by_semaphore(void *unused)
{
    (void)unused;
    for (int i = 0; i < TICKS; i++)
        while (sem_wait(&tick_sem) != 0)
            if (errno != EINTR)
                die_errno("sem_wait");
    return NULL;
}

static void *wait_ticks_by_pipe(void *unused)
{
    (void)unused;
    char c;
    for (int i = 0; i < TICKS; i++)
        if (read(tick_pipe[0], &c, 1) != 1)
            die_errno("read");
    return NULL;
}

static bool check_timer(void)
{
    void *(*waiters[])(void *) = { wait_ticks_by_condition, wait_ticks_by_semaphore, wait_ticks_by_pipe };
    pthread_t threads[3];
    if (sem_init(&tick_sem, 0, 0) != 0)
        die_errno("sem_init");
    make_pipe(tick_pipe);
    for (int i = 0; i < 3; i++)
        if (pthread_create(&threads[i], NULL, waiters[i], NULL) != 0)
            die("pthread_create failed");
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD;
    event.sigev_notify_function = on_tick;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0)
        return failf("timer_create: %s", errname(errno));
    struct itimerspec every_ms = { { 0, 1000000 }, { 0, 1000000 } };
    if (timer_settime(timer, 0, &every_ms, NULL) != 0)
        die_errno("timer_settime");
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);
    timer_delete(timer);    /* a callback already started may still run: it counts on */
    return true;
}

static bool check_aio(void)
{
    char path[] = "/tmp/coop-glibc-threads-XXXXXX", content[READS + READ_SIZE];
    int fd = mkstemp(path);
    if (fd < 0)
        die_errno("mkstemp");
    unlink(path);
    for (size_t i = 0; i < sizeof content; i++)
        content[i] = (char)('a' + i % 26);
    if (write(fd, content, sizeof content) != (ssize_t)sizeof content)
        die_errno("write");
    static struct aiocb requests[READS];
    static char buffers[READS][READ_SIZE];
    for (int i = 0; i < READS; i++) {
        memset(&requests[i], 0, sizeof requests[i]);
        requests[i].aio_fildes = fd;
        requests[i].aio_buf = buffers[i];
        requests[i].aio_nbytes = READ_SIZE;
        requests[i].aio_offset = i;
        requests[i].aio_sigevent.sigev_notify = SIGEV_THREAD;
        requests[i].aio_sigevent.sigev_notify_function = on_notified;
        requests[i].aio_sigevent.sigev_value.sival_ptr = &reads_told;
        if (aio_read(&requests[i]) != 0)
            return failf("aio_read: %s", errname(errno));
    }
    wait_count(&reads_told, READS);
    for (int i = 0; i < READS; i++) {
        if (aio_error(&requests[i]) != 0 || aio_return(&requests[i]) != READ_SIZE)
            return failf("read %d: error %s", i, errname(aio_error(&requests[i])));
        if (memcmp(buffers[i], content + i, READ_SIZE) != 0)
            return failf("read %d: wrong bytes", i);
    }
    close(fd);
    return true;
}

static bool check_gai(void)
{
    static const char *names[] = { "localhost", "127.0.0.1" };
    static struct gaicb requests[2];
    struct gaicb *list[2];
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    for (int i = 0; i < 2; i++) {
        memset(&requests[i], 0, sizeof requests[i]);
        requests[i].ar_name = names[i];
        requests[i].ar_request = &hints;
        list[i] = &requests[i];
    }
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD;
    event.sigev_notify_function = on_notified;
    event.sigev_value.sival_ptr = &lookups_told;
    int err = getaddrinfo_a(GAI_NOWAIT, list, 2, &event);
    if (err != 0)
        return failf("getaddrinfo_a: %s", gai_strerror(err));
    wait_count(&lookups_told, 1);
    for (int i = 0; i < 2; i++) {
        if ((err = gai_error(&requests[i])) != 0)
            return failf("%s: %s", names[i], gai_strerror(err));
        const struct sockaddr_in *in = (const struct sockaddr_in *)requests[i].ar_result->ai_addr;
        if (in->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
            return failf("%s: not 127.0.0.1", names[i]);
        freeaddrinfo(requests[i].ar_result);
    }
    return true;
}

static mqd_t queue;
static int receive_error;

static void on_message(union sigval unused)
{
    (void)unused;
    char buf[32];
    ssize_t n = mq_receive(queue, buf, sizeof buf, NULL);
    receive_error = n < 0 ? errno : 0;
    if (n > 0)
        snprintf(message, sizeof message, "%.*s", (int)n, buf);
    count(&messages_told);      /* its lock publishes both to the waiter */
}

/* Skipped where message queues, or the netlink socket through which glibc hears of a
 * SIGEV_THREAD notification, are missing or forbidden (a sandbox). */
static bool check_mq(void)
{
    char name[64], reason[64];
    snprintf(name, sizeof name, "/coop-glibc-threads-%d", (int)getpid());
    struct mq_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.mq_maxmsg = 4;
    attr.mq_msgsize = 32;
    queue = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
    if (queue == (mqd_t)-1) {
        snprintf(reason, sizeof reason, "mq_open: %s", errname(errno));
        return skip(reason);
    }
    mq_unlink(name);
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD;
    event.sigev_notify_function = on_message;
    if (mq_notify(queue, &event) != 0) {
        int err = errno;
        mq_close(queue);
        snprintf(reason, sizeof reason, "mq_notify: %s", errname(err));
        return err == EPERM || err == EACCES || err == EAFNOSUPPORT || err == ENOSYS
                   ? skip(reason) : failf("%s", reason);
    }
    if (mq_send(queue, "hello", 5, 0) != 0)
        return failf("mq_send: %s", errname(errno));
    wait_count(&messages_told, 1);
    mq_close(queue);
    if (receive_error != 0)
        return failf("mq_receive: %s", errname(receive_error));
    return strcmp(message, "hello") == 0 ? true : failf("received '%s'", message);
}

int main(void)
{
    report_result("timer", check_timer(), "50 callbacks woke a condition variable, a semaphore and a pipe");
    report_result("aio", check_aio(), "8 reads told to callbacks, every byte right");
    report_result("gai", check_gai(), "localhost and 127.0.0.1 looked up by getaddrinfo_a's threads");
    report_result("mq", check_mq(), "the callback received the message sent");
    return failures != 0;
}
