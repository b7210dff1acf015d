/*
 * spawn -m system|popen [-n CHILDREN] [-t SECONDS]: CHILDREN threads (default 50) start at
 * once and each runs one child through the shell, the way programs shell out:
 *
 *   system   system("sleep 0.3; exit 3"), which must return exit status 3
 *   popen    popen("sleep 0.3; echo ready", "r"), one line read back, pclose status 0
 *
 * A round lasts until every thread has joined; rounds go on until SECONDS have passed (at
 * least one), and the median round is reported as
 *   bench=spawn_MODE ns_per_op=WALL_NS ops=1 children=N
 * Under coop every child (the shell and its sleep) starts with coop preloaded too, as
 * children of a program under cooprun do.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>
#include <sys/wait.h>

#define SYSTEM_COMMAND "sleep 0.3; exit 3"
#define POPEN_COMMAND "sleep 0.3; echo ready"

static bool use_popen;

static void *one_child(void *arg)
{
    (void)arg;
    if (!use_popen) {
        int status = system(SYSTEM_COMMAND);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 3)
            die("system(\"%s\"): status %d", SYSTEM_COMMAND, status);
        return NULL;
    }
    char line[32] = "";
    FILE *f = popen(POPEN_COMMAND, "r");
    if (f == NULL)
        die_errno("popen");
    if (fgets(line, sizeof line, f) == NULL || strcmp(line, "ready\n") != 0)
        die("popen(\"%s\"): read '%s'", POPEN_COMMAND, line);
    int status = pclose(f);
    if (status != 0)
        die("pclose: status %d", status);
    return NULL;
}

static uint64_t round_ns(long children)
{
    pthread_t *threads = calloc((size_t)children, sizeof *threads);
    if (threads == NULL)
        die("out of memory");
    uint64_t start = now_ns();
    for (long i = 0; i < children; i++)
        if (pthread_create(&threads[i], NULL, one_child, NULL) != 0)
            die("pthread_create");
    for (long i = 0; i < children; i++)
        pthread_join(threads[i], NULL);
    uint64_t ns = now_ns() - start;
    free(threads);
    return ns;
}

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *usage = "spawn -m system|popen [-n CHILDREN] [-t SECONDS]";
    struct bench_options o = bench_parse(argc, argv, 50, usage);
    if (o.mode == NULL || (strcmp(o.mode, "system") != 0 && strcmp(o.mode, "popen") != 0))
        die("usage: %s", usage);
    use_popen = strcmp(o.mode, "popen") == 0;
    enum { MAX_ROUNDS = 64 };
    uint64_t ns[MAX_ROUNDS], start = now_ns();
    size_t rounds = 0;
    do
        ns[rounds++] = round_ns(o.ops);
    while (rounds < MAX_ROUNDS && now_ns() - start < (uint64_t)(o.seconds * 1e9));
    qsort(ns, rounds, sizeof *ns, by_value);
    char extra[32];
    snprintf(extra, sizeof extra, "children=%ld", o.ops);
    bench_report(use_popen ? "spawn_popen" : "spawn_system", 1, ns[rounds / 2], extra);
    return 0;
}
