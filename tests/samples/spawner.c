/*
 * spawner MODE N: N threads each run a child process at the same time, and the results
 * are checked and printed. MODE is
 *
 *   system   system("sleep 0.2"), status 0; and system("exit 3"), system(NULL)
 *   popen    popen("sleep 0.2; echo line I", "r"), the line read back, pclose status 0;
 *            and a popen(..., "w") whose shell exits with what it was sent
 *   spawn    posix_spawnp("sleep", "0.2"), waitpid
 *   waits    fork()ed children collected with wait, waitpid, wait3, wait4, waitid
 *            (P_PID, P_ALL, P_PIDFD), WNOHANG, WUNTRACED, WCONTINUED, ECHILD, and a waitpid that a signal
 *            handler without SA_RESTART interrupts (EINTR) and one with SA_RESTART does not
 *
 * then "elapsed_ms=MS". With real threads the children overlap, so MS is about 200 for
 * the first three modes, however large N is; a runtime that blocked the process in the
 * wait inside system() or pclose would take N times as long.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

static const char *mode;
static _Atomic int failures;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "spawner: check failed: " __VA_ARGS__);                      \
            fputc('\n', stderr);                                                         \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static void *run_one(void *arg)
{
    long i = (long)arg;
    if (strcmp(mode, "system") == 0) {
        int status = system("sleep 0.2");
        CHECK(status == 0, "system(sleep 0.2) in thread %ld: status %d", i, status);
    } else if (strcmp(mode, "popen") == 0) {
        char command[64], expected[64], line[64] = "";
        snprintf(command, sizeof command, "sleep 0.2; echo line %ld", i);
        snprintf(expected, sizeof expected, "line %ld\n", i);
        FILE *f = popen(command, "r");
        CHECK(f != NULL, "popen: %s", strerror(errno));
        if (f == NULL)
            return NULL;
        CHECK(fileno(f) > 2, "fileno of a popen stream: %d", fileno(f));
        CHECK(fgets(line, sizeof line, f) != NULL && strcmp(line, expected) == 0,
              "thread %ld read '%s' from popen", i, line);
        int status = pclose(f);
        CHECK(status == 0, "pclose in thread %ld: status %d", i, status);
    } else {
        pid_t pid;
        char *argv[] = { "sleep", "0.2", NULL };
        int err = posix_spawnp(&pid, "sleep", NULL, NULL, argv, environ), status = -1;
        CHECK(err == 0, "posix_spawnp: %s", strerror(err));
        if (err == 0)
            CHECK(waitpid(pid, &status, 0) == pid && status == 0, "waitpid after posix_spawnp: status %d", status);
    }
    return NULL;
}

static void extra_system(void)
{
    int status = system("exit 3");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3, "system(exit 3): status %d", status);
    CHECK(system(NULL) != 0, "system(NULL) says there is no shell");
    status = system("kill -TERM $$");
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "system(kill -TERM $$): status %d", status);
    printf("system: exit 3, no-shell check and death by signal reported\n");
}

static void extra_popen(void)
{
    FILE *f = popen("read x; exit $x", "w");
    CHECK(f != NULL, "popen w: %s", strerror(errno));
    fputs("7\n", f);
    int status = pclose(f);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7, "popen w: status %d", status);
    errno = 0;
    CHECK(popen("true", "rw") == NULL && errno == EINVAL, "popen mode rw: errno %d", errno);
    /* The second child must not hold the first's pipe open (POSIX). */
    FILE *a = popen("cat", "w"), *b = popen("sleep 0.05", "r");
    CHECK(a != NULL && b != NULL, "two popen");
    CHECK(pclose(a) == 0 && pclose(b) == 0, "two pclose");
    printf("popen: write mode, bad mode and stream isolation ok\n");
}

static pid_t child_exiting(int code, int delay_ms)
{
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        sleep_ms((unsigned)delay_ms);
        _exit(code);
    }
    return pid;
}

static void on_usr1(int sig) { (void)sig; }

struct kick { pthread_t target; int delay_ms; };

static void *kicker(void *arg)
{
    struct kick *k = arg;
    sleep_ms((unsigned)k->delay_ms);
    pthread_kill(k->target, SIGUSR1);
    return NULL;
}

static void waits(void)
{
    int status;
    pid_t pid = child_exiting(11, 100);
    CHECK(waitpid(pid, &status, WNOHANG) == 0, "WNOHANG on a running child");
    CHECK(waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 11, "waitpid: status %d", status);

    pid = child_exiting(12, 50);
    CHECK(wait(&status) == pid && WEXITSTATUS(status) == 12, "wait: status %d", status);

    struct rusage ru;
    pid = child_exiting(13, 50);
    CHECK(wait4(pid, &status, 0, &ru) == pid && WEXITSTATUS(status) == 13, "wait4: status %d", status);
    pid = child_exiting(14, 50);
    CHECK(wait3(&status, 0, &ru) == pid && WEXITSTATUS(status) == 14, "wait3: status %d", status);

    siginfo_t info;
    pid = child_exiting(15, 50);
    memset(&info, 0, sizeof info);
    CHECK(waitid(P_PID, (id_t)pid, &info, WEXITED) == 0 && info.si_pid == pid && info.si_status == 15
              && info.si_code == CLD_EXITED, "waitid P_PID: status %d", info.si_status);
    pid = child_exiting(16, 50);
    CHECK(waitid(P_ALL, 0, &info, WEXITED) == 0 && info.si_pid == pid && info.si_status == 16, "waitid P_ALL");
    pid = child_exiting(17, 50);
    int pidfd = pidfd_open(pid, 0);
    CHECK(pidfd >= 0, "pidfd_open: %s", strerror(errno));
    CHECK(waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED) == 0 && info.si_pid == pid && info.si_status == 17,
          "waitid P_PIDFD");
    close(pidfd);

    /* Several children, collected by "any child" in the order they end. */
    pid_t slow = child_exiting(21, 400), fast = child_exiting(22, 50);
    pid_t got = waitpid(-1, &status, 0);
    CHECK(got == fast && WEXITSTATUS(status) == 22, "waitpid(-1) first: %d (fast %d, slow %d) status %d errno %d",
          got, fast, slow, status, errno);
    got = waitpid(-1, &status, 0);
    CHECK(got == slow && WEXITSTATUS(status) == 21, "waitpid(-1) second: %d status %d errno %d", got, status, errno);
    errno = 0;
    CHECK(waitpid(-1, &status, 0) == -1 && errno == ECHILD, "waitpid with no child: errno %d", errno);
    CHECK(wait(&status) == -1 && errno == ECHILD, "wait with no child");

    /* A child killed by a signal. */
    pid = child_exiting(0, 5000);
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
          "killed child: status %d", status);

    /* Stopped and continued children. Once continued, the child waits for a byte, so that
     * its exit cannot overtake the report of its continuation. */
    int go[2];
    if (pipe(go) != 0)
        die("pipe");
    pid = fork();
    if (pid == 0) {
        char byte;
        close(go[1]);
        raise(SIGSTOP);
        _exit(read(go[0], &byte, 1) == 1 ? 18 : 19);
    }
    close(go[0]);
    CHECK(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP,
          "WUNTRACED: status %d", status);
    kill(pid, SIGCONT);
    CHECK(waitpid(pid, &status, WCONTINUED) == pid && WIFCONTINUED(status), "WCONTINUED: status %d", status);
    if (write(go[1], "x", 1) != 1)
        die("write");
    close(go[1]);

    CHECK(waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 18, "after SIGCONT: status %d", status);

    /* A handler without SA_RESTART ends the wait with EINTR; with it, the wait goes on. */
    struct sigaction sa = { .sa_handler = on_usr1 };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    struct kick k = { pthread_self(), 50 };
    pthread_t t;
    pid = child_exiting(31, 300);
    pthread_create(&t, NULL, kicker, &k);
    errno = 0;
    CHECK(waitpid(pid, &status, 0) == -1 && errno == EINTR, "waitpid interrupted: errno %d", errno);
    pthread_join(t, NULL);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_create(&t, NULL, kicker, &k);
    CHECK(waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 31, "waitpid restarted: status %d", status);
    pthread_join(t, NULL);
    printf("waits: wait, waitpid, wait3, wait4, waitid, WNOHANG, WUNTRACED, WCONTINUED, ECHILD, EINTR and SA_RESTART ok\n");
}

int main(int argc, char **argv)
{
    if (argc != 3)
        die("usage: spawner system|popen|spawn|waits N");
    mode = argv[1];
    long n = parse_long(argv[2], 1, 10000, "N");
    uint64_t start = now_ns(), elapsed;
    if (strcmp(mode, "waits") == 0) {
        waits();
        elapsed = now_ns() - start;
    } else if (strcmp(mode, "system") == 0 || strcmp(mode, "popen") == 0 || strcmp(mode, "spawn") == 0) {
        pthread_t *threads = calloc((size_t)n, sizeof *threads);
        for (long i = 0; i < n; i++)
            if (pthread_create(&threads[i], NULL, run_one, (void *)i) != 0)
                die("pthread_create");
        for (long i = 0; i < n; i++)
            pthread_join(threads[i], NULL);
        elapsed = now_ns() - start;
        printf("%ld %s children ran at once\n", n, mode);
        if (strcmp(mode, "system") == 0)
            extra_system();
        if (strcmp(mode, "popen") == 0)
            extra_popen();
    } else {
        die("unknown mode '%s'", mode);
    }
    printf("failures=%d\n", failures);
    /* On stderr: the only line that differs from run to run. */
    fprintf(stderr, "elapsed_ms=%llu\n", (unsigned long long)(elapsed / 1000000));
    return failures == 0 ? 0 : 1;
}
