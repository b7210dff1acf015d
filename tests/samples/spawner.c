/*
 * spawner MODE N: child processes from threads; the results are checked and printed.
 * MODE is
 *
 *   system   N threads each run system() of a shell that exits 0; then system("exit 3"),
 *            system(NULL) and a shell killed by a signal
 *   popen    N threads each popen(..., "r") a shell, read back the line it prints and
 *            pclose it (status 0); then a popen(..., "w") whose shell exits with what it was
 *            sent, a bad mode, and two streams open at once
 *   spawn    N threads each posix_spawnp("sh") and waitpid
 *   waits    fork()ed children collected with wait, waitpid, wait3, wait4, waitid
 *            (P_PID, P_ALL, P_PIDFD), WNOHANG, WUNTRACED, WCONTINUED, ECHILD, and a waitpid that a signal
 *            handler without SA_RESTART interrupts (EINTR) and one with SA_RESTART does not
 *   vfork    a lone thread's vfork child changes its own fds and signal dispositions, which
 *            the parent's must not follow; vfork beside another thread; N is unused
 *
 * In the first three modes the N children overlap by construction: each shell announces
 * itself on a FIFO and then waits for a line on another, which a coordinator thread writes
 * only once all N have announced. Were the children run one at a time (a system() or a
 * waitpid that blocked the whole process), the first would wait for ever: the test's
 * timeout says so. Nothing is timed.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* --- the children's rendezvous --- */
static struct {
    char dir[64], announce[96], go[96];
    int announce_fd, go_fd;    /* opened read-write: never blocks, never sees EOF */
    long n;
} meet;

static void meet_prepare(long n)
{
    snprintf(meet.dir, sizeof meet.dir, "%s/spawner.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(meet.dir) == NULL)
        die_errno("mkdtemp");
    snprintf(meet.announce, sizeof meet.announce, "%s/announce", meet.dir);
    snprintf(meet.go, sizeof meet.go, "%s/go", meet.dir);
    if (mkfifo(meet.announce, 0600) != 0 || mkfifo(meet.go, 0600) != 0)
        die_errno("mkfifo");
    meet.announce_fd = open(meet.announce, O_RDWR | O_CLOEXEC);
    meet.go_fd = open(meet.go, O_RDWR | O_CLOEXEC);
    if (meet.announce_fd < 0 || meet.go_fd < 0)
        die_errno("open fifo");
    meet.n = n;
}

static void meet_remove(void)
{
    close(meet.announce_fd);
    close(meet.go_fd);
    unlink(meet.announce);
    unlink(meet.go);
    rmdir(meet.dir);
}

/* The shell command of child i: announce, wait for the go, then print what follows. */
static void meet_command(char *buf, size_t len, long i, const char *then)
{
    snprintf(buf, len, "echo %ld > '%s' && read go < '%s'%s%s", i, meet.announce, meet.go,
             then[0] ? " && " : "", then);
}

/* Lets every child go once all have announced themselves. */
static void *coordinator(void *arg)
{
    (void)arg;
    long announced = 0;
    char buf[512];
    while (announced < meet.n) {
        ssize_t got = read(meet.announce_fd, buf, sizeof buf);
        if (got <= 0)
            die_errno("read announcements");
        for (ssize_t k = 0; k < got; k++)
            announced += buf[k] == '\n';
    }
    for (long i = 0; i < meet.n; i++)
        if (write(meet.go_fd, "go\n", 3) != 3)
            die_errno("write go");
    return NULL;
}

/* --- system, popen, posix_spawnp --- */
static void *run_one(void *arg)
{
    long i = (long)arg;
    char command[512];
    if (strcmp(mode, "system") == 0) {
        meet_command(command, sizeof command, i, "");
        int status = system(command);
        CHECK(status == 0, "system in thread %ld: status %d", i, status);
    } else if (strcmp(mode, "popen") == 0) {
        char expected[64], line[64] = "", then[64];
        snprintf(then, sizeof then, "echo line %ld", i);
        snprintf(expected, sizeof expected, "line %ld\n", i);
        meet_command(command, sizeof command, i, then);
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
        meet_command(command, sizeof command, i, "");
        char *argv[] = { "sh", "-c", command, NULL };
        int err = posix_spawnp(&pid, "sh", NULL, NULL, argv, environ), status = -1;
        CHECK(err == 0, "posix_spawnp: %s", strerror(err));
        if (err == 0)
            CHECK(waitpid(pid, &status, 0) == pid && status == 0, "waitpid after posix_spawnp: status %d", status);
    }
    return NULL;
}

static void children_at_once(long n)
{
    meet_prepare(n);
    pthread_t coord, *threads = calloc((size_t)n, sizeof *threads);
    if (threads == NULL || pthread_create(&coord, NULL, coordinator, NULL) != 0)
        die("pthread_create");
    for (long i = 0; i < n; i++)
        if (pthread_create(&threads[i], NULL, run_one, (void *)i) != 0)
            die("pthread_create");
    for (long i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_join(coord, NULL);
    meet_remove();
    free(threads);
    printf("%ld %s children ran at once\n", n, mode);
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
    /* The second child must not hold the first's pipe open (POSIX): cat ends at EOF. */
    FILE *a = popen("cat", "w"), *b = popen("true", "r");
    CHECK(a != NULL && b != NULL, "two popen");
    CHECK(pclose(a) == 0 && pclose(b) == 0, "two pclose");
    printf("popen: write mode, bad mode and stream isolation ok\n");
}

/* --- every wait call --- */

/* A child that exits with code once a byte comes on release (or at once, with -1). */
static pid_t child_exiting(int code, int release)
{
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        char byte;
        if (release >= 0 && read(release, &byte, 1) < 0)
            _exit(99);
        _exit(code);
    }
    return pid;
}

/* Close-on-exec: the children system() and popen start must not hold a rendezvous open. */
static void make_cloexec_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        die_errno("pipe");
}

static void let_go(int fds[2])
{
    if (write(fds[1], "x", 1) != 1)
        die_errno("write");
    close_pair(fds);
}

static _Atomic int usr1_seen;
static void on_usr1(int sig)
{
    (void)sig;
    usr1_seen++;
}

/* Sends SIGUSR1 to target every millisecond until told to stop, or until it has been
 * handled enough times and then lets the child go (a wait with SA_RESTART must go on). */
struct kick { pthread_t target; _Atomic bool stop; int enough; int *release; };

static void *kicker(void *arg)
{
    struct kick *k = arg;
    while (!k->stop && (k->enough == 0 || usr1_seen < k->enough)) {
        pthread_kill(k->target, SIGUSR1);
        sleep_ms(1);
    }
    if (k->release != NULL)
        let_go(k->release);
    return NULL;
}

static void waits(void)
{
    int status, go[2];
    make_cloexec_pipe(go);
    pid_t pid = child_exiting(11, go[0]);
    CHECK(waitpid(pid, &status, WNOHANG) == 0, "WNOHANG on a running child");
    let_go(go);
    CHECK(waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 11, "waitpid: status %d", status);

    pid = child_exiting(12, -1);
    CHECK(wait(&status) == pid && WEXITSTATUS(status) == 12, "wait: status %d", status);

    struct rusage ru;
    pid = child_exiting(13, -1);
    CHECK(wait4(pid, &status, 0, &ru) == pid && WEXITSTATUS(status) == 13, "wait4: status %d", status);
    pid = child_exiting(14, -1);
    CHECK(wait3(&status, 0, &ru) == pid && WEXITSTATUS(status) == 14, "wait3: status %d", status);

    siginfo_t info;
    pid = child_exiting(15, -1);
    memset(&info, 0, sizeof info);
    CHECK(waitid(P_PID, (id_t)pid, &info, WEXITED) == 0 && info.si_pid == pid && info.si_status == 15
              && info.si_code == CLD_EXITED, "waitid P_PID: status %d", info.si_status);
    pid = child_exiting(16, -1);
    CHECK(waitid(P_ALL, 0, &info, WEXITED) == 0 && info.si_pid == pid && info.si_status == 16, "waitid P_ALL");
    pid = child_exiting(17, -1);
    int pidfd = pidfd_open(pid, 0);
    CHECK(pidfd >= 0, "pidfd_open: %s", strerror(errno));
    CHECK(waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED) == 0 && info.si_pid == pid && info.si_status == 17,
          "waitid P_PIDFD");
    close(pidfd);

    /* Several children, collected by "any child" in the order they end: the slow one ends
     * only when let go, after the fast one has been collected. */
    make_cloexec_pipe(go);
    pid_t slow = child_exiting(21, go[0]), fast = child_exiting(22, -1);
    pid_t got = waitpid(-1, &status, 0);
    CHECK(got == fast && WEXITSTATUS(status) == 22, "waitpid(-1) first: %d (fast %d, slow %d) status %d errno %d",
          got, fast, slow, status, errno);
    let_go(go);
    got = waitpid(-1, &status, 0);
    CHECK(got == slow && WEXITSTATUS(status) == 21, "waitpid(-1) second: %d status %d errno %d", got, status, errno);
    errno = 0;
    CHECK(waitpid(-1, &status, 0) == -1 && errno == ECHILD, "waitpid with no child: errno %d", errno);
    CHECK(wait(&status) == -1 && errno == ECHILD, "wait with no child");

    /* A child killed by a signal. */
    make_cloexec_pipe(go);
    pid = child_exiting(0, go[0]);
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
          "killed child: status %d", status);
    close(go[0]);
    close(go[1]);

    /* Stopped and continued children. Once continued, the child waits for a byte, so that
     * its exit cannot overtake the report of its continuation. */
    make_cloexec_pipe(go);
    pid = fork();
    if (pid == 0) {
        char byte;
        close(go[1]);
        raise(SIGSTOP);
        _exit(read(go[0], &byte, 1) == 1 ? 18 : 19);
    }
    CHECK(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP,
          "WUNTRACED: status %d", status);
    kill(pid, SIGCONT);
    CHECK(waitpid(pid, &status, WCONTINUED) == pid && WIFCONTINUED(status), "WCONTINUED: status %d", status);
    let_go(go);
    CHECK(waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 18, "after SIGCONT: status %d", status);

    /* A handler without SA_RESTART ends the wait with EINTR (the child runs until let go,
     * so only a signal can end it); with SA_RESTART the wait goes on through the signals
     * until the child is let go. */
    struct sigaction sa = { .sa_handler = on_usr1 };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    make_cloexec_pipe(go);
    pid = child_exiting(31, go[0]);
    struct kick k = { .target = pthread_self() };
    pthread_t t;
    pthread_create(&t, NULL, kicker, &k);
    errno = 0;
    CHECK(waitpid(pid, &status, 0) == -1 && errno == EINTR, "waitpid interrupted: errno %d", errno);
    k.stop = true;
    pthread_join(t, NULL);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    usr1_seen = 0;
    k = (struct kick){ .target = pthread_self(), .enough = 20, .release = go };
    pthread_create(&t, NULL, kicker, &k);
    CHECK(waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 31, "waitpid restarted: status %d", status);
    pthread_join(t, NULL);
    printf("waits: wait, waitpid, wait3, wait4, waitid, WNOHANG, WUNTRACED, WCONTINUED, ECHILD, EINTR and SA_RESTART ok\n");
}

/* --- vfork --- */

/* Writes len bytes to fd from a thread of its own (so that, under coop, through the
 * cooperative write, which consults what coop knows of fd). */
struct writer { int fd; size_t len; bool ok; };

static void *write_all(void *arg)
{
    struct writer *w = arg;
    static char block[4096];
    size_t done = 0;
    while (done < w->len) {
        ssize_t n = write(w->fd, block, sizeof block);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    w->ok = done >= w->len;
    close(w->fd);
    return NULL;
}

static void *wait_for_eof(void *arg)
{
    char byte;
    return (void *)(intptr_t)read((int)(intptr_t)arg, &byte, 1);
}

static void vfork_checks(void)
{
    struct sigaction sa = { .sa_handler = on_usr1 }, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    int pipe_fds[2], sv[2], status;
    make_cloexec_pipe(pipe_fds);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        die_errno("socketpair");

    /* The only thread: the child borrows the parent's memory until it execs. */
    pid_t pid = vfork();
    if (pid == 0) {
        dup2(sv[0], pipe_fds[1]);     /* its own fd becomes a socket */
        signal(SIGUSR1, SIG_DFL);
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && status == 0, "vfork alone: status %d", status);
    CHECK(sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == on_usr1,
          "after the vfork child's signal(): the parent's handler is %p", (void *)old.sa_handler);
    usr1_seen = 0;
    raise(SIGUSR1);
    CHECK(usr1_seen == 1, "after the vfork child's signal(): SIGUSR1 handled %d times", (int)usr1_seen);
    /* A pipe's worth and more through the parent's fd, which is still the pipe. */
    struct writer w = { .fd = pipe_fds[1], .len = 256 * 1024 };
    pthread_t t;
    pthread_create(&t, NULL, write_all, &w);
    char buf[4096];
    size_t got = 0;
    ssize_t n;
    while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0)
        got += (size_t)n;
    pthread_join(t, NULL);
    CHECK(w.ok && got == w.len, "after the vfork child's dup2: %zu of %zu bytes through the parent's pipe", got, w.len);
    close(pipe_fds[0]);
    close(sv[0]);
    close(sv[1]);

    /* Beside another thread, which keeps its own wait. */
    int go[2];
    make_cloexec_pipe(go);
    pthread_create(&t, NULL, wait_for_eof, (void *)(intptr_t)go[0]);
    pid = vfork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 5", (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 5,
          "vfork beside a thread: status %d", status);
    close(go[1]);
    void *result;
    pthread_join(t, &result);
    CHECK(result == 0, "the other thread's read: %ld", (long)(intptr_t)result);
    close(go[0]);
    printf("vfork: the child's dup2 and signal() left the parent's alone; vfork beside a thread ok\n");
}

int main(int argc, char **argv)
{
    if (argc != 3)
        die("usage: spawner system|popen|spawn|waits|vfork N");
    mode = argv[1];
    long n = parse_long(argv[2], 1, 10000, "N");
    if (strcmp(mode, "waits") == 0) {
        waits();
    } else if (strcmp(mode, "vfork") == 0) {
        vfork_checks();
    } else if (strcmp(mode, "system") == 0 || strcmp(mode, "popen") == 0 || strcmp(mode, "spawn") == 0) {
        children_at_once(n);
        if (strcmp(mode, "system") == 0)
            extra_system();
        if (strcmp(mode, "popen") == 0)
            extra_popen();
    } else {
        die("unknown mode '%s'", mode);
    }
    printf("failures=%d\n", failures);
    return failures == 0 ? 0 : 1;
}
