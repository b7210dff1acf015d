/*
 * cancel: thread cancellation and pthread_exit as POSIX and glibc do them, one line per check:
 *
 *   ok NAME: what was seen       as glibc's threads do it
 *   FAIL NAME: why               not
 *
 * and exits 1 when any check failed. A victim thread pushes a cleanup handler, says it is
 * ready and enters a cancellation point (read, recv, sleep, poll, sem_wait, pause,
 * pthread_cond_wait, pthread_join); the main thread cancels it and joins it: the join value
 * must be PTHREAD_CANCELED and the handler must have run (in pthread_cond_wait, with the
 * mutex taken back). Disabled cancellation waits for pthread_testcancel, asynchronous
 * cancellation ends a thread waiting for a mutex, pthread_exit runs the handlers of every
 * frame, innermost first. Nothing here is timed: the short naps only let a victim reach its
 * wait first.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <poll.h>
#include <pthread.h>
#include <semaphore.h>

enum { NAP_MS = 20 };

/* What one victim did, in the order it did it. */
struct victim {
    sem_t ready, go;
    int fds[2];
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_t other;           /* for the joiner */
    int unlock_in_cleanup;
    char trace[128];
};

static void note_step(struct victim *v, const char *step)
{
    if (v->trace[0] != '\0')
        strcat(v->trace, ",");
    strcat(v->trace, step);
}

static void cleanup(void *arg) { note_step(arg, "cleanup"); }

static void unlock_cleanup(void *arg)
{
    struct victim *v = arg;
    v->unlock_in_cleanup = pthread_mutex_unlock(&v->mutex);
    note_step(v, "cleanup");
}

static void init_victim(struct victim *v)
{
    pthread_mutexattr_t attr;

    memset(v, 0, sizeof *v);
    sem_init(&v->ready, 0, 0);
    sem_init(&v->go, 0, 0);
    if (pipe(v->fds) != 0)
        die_errno("pipe");
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&v->mutex, &attr);
    pthread_cond_init(&v->cond, NULL);
    v->unlock_in_cleanup = -1;
}

static void free_victim(struct victim *v)
{
    close(v->fds[0]);
    close(v->fds[1]);
    sem_destroy(&v->ready);
    sem_destroy(&v->go);
}

/* ---- victims: each waits forever in one cancellation point ---- */

static void *in_read(void *arg)
{
    struct victim *v = arg;
    char byte;

    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    if (read(v->fds[0], &byte, 1) >= 0)
        note_step(v, "read returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_recv(void *arg)
{
    struct victim *v = arg;
    char byte;

    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    if (recv(v->fds[0], &byte, 1, 0) >= 0)
        note_step(v, "recv returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_sleep(void *arg)
{
    struct victim *v = arg;

    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    sleep(1000);
    note_step(v, "sleep returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_poll(void *arg)
{
    struct victim *v = arg;
    struct pollfd p = { .fd = v->fds[0], .events = POLLIN };

    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    poll(&p, 1, -1);
    note_step(v, "poll returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_pause(void *arg)
{
    struct victim *v = arg;

    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    pause();
    note_step(v, "pause returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_cond_wait(void *arg)
{
    struct victim *v = arg;

    pthread_mutex_lock(&v->mutex);
    pthread_cleanup_push(unlock_cleanup, v);
    sem_post(&v->ready);       /* the main thread then takes the mutex: we are waiting */
    for (;;)
        pthread_cond_wait(&v->cond, &v->mutex);
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_sem_wait(void *arg)
{
    struct victim *v = arg;

    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    sem_wait(&v->go);
    note_step(v, "sem_wait returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *waits_for_go(void *arg)
{
    struct victim *v = arg;

    sem_wait(&v->go);
    return (void *)7;
}

static void *in_join(void *arg)
{
    struct victim *v = arg;

    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    pthread_join(v->other, NULL);
    note_step(v, "join returned");
    pthread_cleanup_pop(0);
    return NULL;
}

/* ---- the checks ---- */

static bool joined_cancelled(pthread_t t, struct victim *v, const char *trace)
{
    void *value = NULL;
    int err = pthread_join(t, &value);

    if (err != 0)
        return failf("pthread_join: %s", errname(err));
    if (value != PTHREAD_CANCELED)
        return failf("join value %p, not PTHREAD_CANCELED", value);
    if (strcmp(v->trace, trace) != 0)
        return failf("the victim did \"%s\", expected \"%s\"", v->trace, trace);
    return true;
}

/* Starts a victim, waits until it is about to wait, lets it get there, cancels it. */
static pthread_t start_and_cancel(void *(*body)(void *), struct victim *v)
{
    pthread_t t;

    if (pthread_create(&t, NULL, body, v) != 0)
        die("pthread_create");
    sem_wait(&v->ready);
    sleep_ms(NAP_MS);
    if (pthread_cancel(t) != 0)
        die("pthread_cancel");
    return t;
}

/* How a victim is set up, what it must have done and what its line says. */
struct victim_case {
    const char *name;
    void *(*body)(void *);
    const char *trace, *result;
    enum { PLAIN, ON_SOCKET, MUTEX_HELD, GO_AFTER_CANCEL } setup;
};

static void check_victim(const struct victim_case *c)
{
    struct victim v;
    pthread_t t;

    init_victim(&v);
    if (c->setup == ON_SOCKET) {
        close(v.fds[0]);
        close(v.fds[1]);
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, v.fds) != 0)
            die_errno("socketpair");
    }
    if (c->setup == MUTEX_HELD)
        pthread_mutex_lock(&v.mutex);
    t = start_and_cancel(c->body, &v);
    if (c->setup == GO_AFTER_CANCEL)
        sem_post(&v.go);
    report_result(c->name, joined_cancelled(t, &v, c->trace), c->result);
    if (c->setup == MUTEX_HELD)
        pthread_mutex_unlock(&v.mutex);
    free_victim(&v);
}

static void check_cond_wait(void)
{
    struct victim v;
    pthread_t t;
    bool ok;

    init_victim(&v);
    if (pthread_create(&t, NULL, in_cond_wait, &v) != 0)
        die("pthread_create");
    sem_wait(&v.ready);
    pthread_mutex_lock(&v.mutex);       /* only once the victim waits */
    pthread_mutex_unlock(&v.mutex);
    pthread_cancel(t);
    ok = joined_cancelled(t, &v, "cleanup")
         && (v.unlock_in_cleanup == 0 || failf("unlock in the cleanup handler: %s", errname(v.unlock_in_cleanup)));
    report_result("cancel_cond_wait", ok, "PTHREAD_CANCELED, the handler held the mutex");
    free_victim(&v);
}

static void check_join(void)
{
    struct victim v;
    pthread_t t;
    void *value = NULL;
    bool ok;

    init_victim(&v);
    if (pthread_create(&v.other, NULL, waits_for_go, &v) != 0)
        die("pthread_create");
    t = start_and_cancel(in_join, &v);
    ok = joined_cancelled(t, &v, "cleanup");
    sem_post(&v.go);
    if (ok && pthread_join(v.other, &value) != 0)
        ok = failf("the thread the victim joined could not be joined after");
    else if (ok && value != (void *)7)
        ok = failf("the thread the victim joined returned %p", value);
    report_result("cancel_join", ok, "PTHREAD_CANCELED, its target still joinable");
    free_victim(&v);
}

static void *disabled_then_testcancel(void *arg)
{
    struct victim *v = arg;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    sem_wait(&v->go);            /* a cancellation point, while disabled */
    usleep(1000);
    note_step(v, "waited while disabled");
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    note_step(v, "enabled");
    pthread_testcancel();
    note_step(v, "testcancel returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *disabled_then_async(void *arg)
{
    struct victim *v = arg;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    sem_wait(&v->go);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    note_step(v, "enabled");
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    note_step(v, "setcanceltype returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *async_in_mutex(void *arg)
{
    struct victim *v = arg;

    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    pthread_cleanup_push(cleanup, v);
    sem_post(&v->ready);
    pthread_mutex_lock(&v->mutex);    /* held by the main thread: not a cancellation point */
    note_step(v, "locked");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *cancels_itself(void *arg)
{
    struct victim *v = arg;
    int err;

    pthread_cleanup_push(cleanup, v);
    err = pthread_cancel(pthread_self());
    note_step(v, err == 0 ? "cancelled itself" : "pthread_cancel failed");
    pthread_testcancel();
    note_step(v, "testcancel returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void check_self(void)
{
    struct victim v;
    pthread_t t;
    bool ok;

    init_victim(&v);
    if (pthread_create(&t, NULL, cancels_itself, &v) != 0)
        die("pthread_create");
    ok = joined_cancelled(t, &v, "cancelled itself,cleanup");
    report_result("cancel_self", ok, "deferred until pthread_testcancel");
    free_victim(&v);
}

static void *returns_eight(void *arg)
{
    (void)arg;
    return (void *)8;
}

static void check_finished(void)
{
    pthread_t t;
    void *value = NULL;
    int err;
    bool ok = true;

    if (pthread_create(&t, NULL, returns_eight, NULL) != 0)
        die("pthread_create");
    sleep_ms(NAP_MS);
    err = pthread_cancel(t);
    if (err != 0)
        ok = failf("pthread_cancel of a finished thread: %s", errname(err));
    else if ((err = pthread_join(t, &value)) != 0)
        ok = failf("pthread_join: %s", errname(err));
    else if (value != (void *)8)
        ok = failf("join value %p, not its return value", value);
    report_result("cancel_finished", ok, "0, and the join gives its return value");
}

/* ---- pthread_exit: the handlers of every frame, innermost first ---- */

static void outer_cleanup(void *arg) { note_step(arg, "outer"); }
static void inner_cleanup(void *arg) { note_step(arg, "inner"); }

static __attribute__((noinline)) void exit_from_inner(struct victim *v)
{
    pthread_cleanup_push(inner_cleanup, v);
    pthread_exit((void *)42);
    pthread_cleanup_pop(0);
}

static void *exits_nested(void *arg)
{
    struct victim *v = arg;

    pthread_cleanup_push(outer_cleanup, v);
    exit_from_inner(v);
    note_step(v, "pthread_exit returned");
    pthread_cleanup_pop(0);
    return NULL;
}

static void *pops_and_returns(void *arg)
{
    struct victim *v = arg;

    pthread_cleanup_push(outer_cleanup, v);
    pthread_cleanup_push(inner_cleanup, v);
    pthread_cleanup_pop(1);
    pthread_cleanup_pop(0);
    return (void *)43;
}

static void check_exit(const char *name, void *(*body)(void *), void *expect, const char *trace)
{
    struct victim v;
    pthread_t t;
    void *value = NULL;
    bool ok = true;
    char result[192];

    init_victim(&v);
    if (pthread_create(&t, NULL, body, &v) != 0)
        die("pthread_create");
    if (pthread_join(t, &value) != 0)
        ok = failf("pthread_join failed");
    else if (value != expect)
        ok = failf("join value %p, expected %p", value, expect);
    else if (strcmp(v.trace, trace) != 0)
        ok = failf("handlers ran as \"%s\", expected \"%s\"", v.trace, trace);
    snprintf(result, sizeof result, "value %ld, handlers \"%s\"", (long)(intptr_t)value, v.trace);
    report_result(name, ok, result);
    free_victim(&v);
}

static const struct victim_case victims[] = {
    { "cancel_read", in_read, "cleanup", "PTHREAD_CANCELED, cleanup handler ran", PLAIN },
    { "cancel_recv", in_recv, "cleanup", "PTHREAD_CANCELED, cleanup handler ran", ON_SOCKET },
    { "cancel_sleep", in_sleep, "cleanup", "PTHREAD_CANCELED, cleanup handler ran", PLAIN },
    { "cancel_poll", in_poll, "cleanup", "PTHREAD_CANCELED, cleanup handler ran", PLAIN },
    { "cancel_sem_wait", in_sem_wait, "cleanup", "PTHREAD_CANCELED, cleanup handler ran", PLAIN },
    { "cancel_pause", in_pause, "cleanup", "PTHREAD_CANCELED, cleanup handler ran", PLAIN },
    { "cancel_disabled", disabled_then_testcancel, "waited while disabled,enabled,cleanup",
      "held off while disabled, acted on at pthread_testcancel", GO_AFTER_CANCEL },
    { "cancel_pending_async", disabled_then_async, "enabled,cleanup",
      "acted on when the type became asynchronous", GO_AFTER_CANCEL },
    { "cancel_async", async_in_mutex, "cleanup", "a thread waiting for a mutex ended", MUTEX_HELD },
};

int main(void)
{
    for (size_t i = 0; i < sizeof victims / sizeof victims[0]; i++)
        check_victim(&victims[i]);
    check_cond_wait();
    check_join();
    check_self();
    check_finished();
    check_exit("exit_nested", exits_nested, (void *)42, "inner,outer");
    check_exit("exit_by_return", pops_and_returns, (void *)43, "inner");
    printf("%s\n", failures == 0 ? "cancel: all checks passed" : "cancel: checks failed");
    return failures == 0 ? 0 : 1;
}
