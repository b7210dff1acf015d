/*
 * joined: calls on threads that are no longer joinable give glibc's errors, never a crash,
 * one line per check:
 *
 *   ok NAME: what was seen       as glibc's threads do it
 *   FAIL NAME: why               not
 *
 * and exits 1 when any check failed. A thread already joined: pthread_join and
 * pthread_detach say ESRCH, pthread_tryjoin_np EBUSY (glibc keeps the descriptor, whose tid
 * is not 0), pthread_cancel and pthread_kill(t, 0) succeed without effect. A detached thread:
 * pthread_join and a second pthread_detach say EINVAL. A thread that joins itself: EDEADLK.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <pthread.h>
#include <semaphore.h>

static sem_t go;

static void *returns_arg(void *arg) { return arg; }

static void *waits_for_go(void *arg)
{
    sem_wait(&go);
    return arg;
}

static void *joins_itself(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)pthread_join(pthread_self(), NULL);
}

static void check(const char *name, int got, int want)
{
    char result[64];

    snprintf(result, sizeof result, "%s", errname(got));
    report_result(name, got == want || failf("%s, expected %s", errname(got), errname(want)), result);
}

int main(void)
{
    pthread_t t, d;
    pthread_attr_t detached;
    void *value = NULL;

    sem_init(&go, 0, 0);
    if (pthread_create(&t, NULL, returns_arg, (void *)5) != 0)
        die("pthread_create");
    check("join", pthread_join(t, &value), 0);
    check("join_again", pthread_join(t, &value), ESRCH);
    check("tryjoin_joined", pthread_tryjoin_np(t, &value), EBUSY);
    check("detach_joined", pthread_detach(t), ESRCH);
    check("cancel_joined", pthread_cancel(t), 0);
    check("kill_joined", pthread_kill(t, 0), 0);
    check("join_again_after_all_that", pthread_join(t, &value), ESRCH);

    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&d, &detached, waits_for_go, NULL) != 0)
        die("pthread_create");
    check("join_detached", pthread_join(d, &value), EINVAL);
    check("detach_detached", pthread_detach(d), EINVAL);
    sem_post(&go);

    if (pthread_create(&t, NULL, joins_itself, NULL) != 0 || pthread_join(t, &value) != 0)
        die("pthread_create");
    check("join_self", (int)(intptr_t)value, EDEADLK);

    printf("%s\n", failures == 0 ? "joined: all checks passed" : "joined: checks failed");
    return failures == 0 ? 0 : 1;
}
