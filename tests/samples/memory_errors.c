/*
 * memory_errors KIND: two threads pass a token back and forth a hundred times through a mutex
 * and a condition variable, then the second one makes one memory error of KIND:
 *
 *   stack   reads past the end of an array on its own stack
 *   heap    reads a block it has freed
 *   none    makes none, and the program prints "no error"
 *
 * Built with AddressSanitizer (make test-asan), the program dies with ASan's report of the
 * error; test_sanitizer checks that it does so under coop too, where the thread is a greenlet
 * on a stack of coop's.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>

enum { ROUNDS = 100 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turned = PTHREAD_COND_INITIALIZER;
static int turn;                 /* counts passes; even: the first thread's turn */
static volatile int past_end = 8; /* volatile: the compiler must not see the overrun */

static void pass_token(int me)
{
    pthread_mutex_lock(&lock);
    while (turn % 2 != me)
        pthread_cond_wait(&turned, &lock);
    turn++;
    pthread_cond_broadcast(&turned);
    pthread_mutex_unlock(&lock);
}

/* Through a pointer, so that ASan, not UBSan's bounds check, sees the overrun. */
__attribute__((noinline)) static int read_at(const char *p, int index) { return p[index]; }

__attribute__((noinline)) static int overrun_stack(void)
{
    char array[8];
    memset(array, 1, sizeof array);
    return read_at(array, past_end);
}

__attribute__((noinline)) static int read_freed(void)
{
    char *volatile block = malloc(64);
    if (block == NULL)
        die("out of memory");
    memset(block, 1, 64);
    free(block);
    return block[past_end];
}

static const char *kind;

static void *player(void *arg)
{
    int me = (int)(intptr_t)arg, value = 0;
    for (int i = 0; i < ROUNDS; i++)
        pass_token(me);
    if (me == 1 && strcmp(kind, "stack") == 0)
        value = overrun_stack();
    else if (me == 1 && strcmp(kind, "heap") == 0)
        value = read_freed();
    return (void *)(intptr_t)value;
}

int main(int argc, char **argv)
{
    pthread_t threads[2];
    void *value;

    if (argc != 2)
        die("usage: memory_errors stack|heap|none");
    kind = argv[1];
    if (strcmp(kind, "stack") != 0 && strcmp(kind, "heap") != 0 && strcmp(kind, "none") != 0)
        die("unknown kind '%s'", kind);
    for (intptr_t i = 0; i < 2; i++)
        if (pthread_create(&threads[i], NULL, player, (void *)i) != 0)
            die("pthread_create failed");
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], &value);
    printf("no error (%d)\n", (int)(intptr_t)value);
    return 0;
}
