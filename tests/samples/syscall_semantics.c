/*
 * syscall_semantics: what the kernel answers where a runtime in between could answer
 * otherwise, one line per check:
 *
 *   ok NAME: RESULT      RESULT is what the calls returned ("-1 EFAULT", "0"...)
 *   FAIL NAME: why       the answer is not the one Linux documents
 *
 * Exit status 1 when a check failed. Where the kernel's answer depends on its version
 * (a wake on an unmapped address, for one), the line only records it: run natively, then
 * through coop, and compare the lines. Every check but one runs in the main thread with no
 * other thread alive, so that under coop it takes the path of a lone greenlet (or, with
 * COOP_ALWAYS_COOPERATIVE=1, the cooperative path); futex_private_and_shared_apart starts
 * a thread, and joins it.
 *
 *   futex     shared futexes across processes, both ways; bad addresses, values, timeouts
 *   sigaction the old action is the kernel's: SA_RESTORER and glibc's restorer included
 *   at_once   calls the kernel answers at once (accept on UDP, a pipe's wrong end,
 *             zero-length reads, MSG_ERRQUEUE, short eventfd reads...), and sigwaitinfo
 *             taking a signal that is not blocked
 *   waitall   MSG_WAITALL on a datagram; MSG_PEEK | MSG_WAITALL on Unix and TCP streams
 *   connect   a blocking connect leaves the socket connected: the next one says EISCONN
 *   args      bad pointers give EFAULT and bad timeouts EINVAL, never a crash
 *   popen     popen and pclose in a forked child that has set environment variables
 *
 * "syscall_semantics futex-waker FD" is the child of the futex check: it maps the memfd FD
 * and wakes the futex at its start until a waiter was woken (exit 0) or the word is no
 * longer 0 (the waiter gave up: exit 1). Parent and child meet through the futex itself:
 * a wake that woke nobody is tried again, so no check depends on timing.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>

enum {
    GIVE_UP_S = 20,        /* a wait that should end and has not by then has failed */
    WATCHDOG_S = 60,       /* a check still running after this kills the program (SIGALRM) */
    RETRY_US = 1000,       /* how often a waker tries again */
};

/* ---- Results as text ---- */

/* "N" for a result, "-1 ENAME" for a failure; a few buffers, so one line can show several. */
static const char *outcome(long r)
{
    static char buffers[8][48];
    static unsigned next;
    char *b = buffers[next++ % 8];

    if (r == -1)
        snprintf(b, sizeof buffers[0], "-1 %s", errname(errno));
    else
        snprintf(b, sizeof buffers[0], "%ld", r);
    return b;
}

/* Checks that a call failed with err; result is its outcome. */
static bool expect_errno(const char *result, int err)
{
    char want[48];

    snprintf(want, sizeof want, "-1 %s", errname(err));
    return strcmp(result, want) == 0 || failf("got %s, expected %s", result, want);
}

static bool expect_result(const char *result, const char *want)
{
    return strcmp(result, want) == 0 || failf("got %s, expected %s", result, want);
}

/* The line of a check of one call that Linux fails with err (0: only recorded, for an
 * answer that depends on the kernel's version). */
static void check_errno(const char *name, long r, int err)
{
    const char *text = outcome(r);

    report_result(name, err == 0 || expect_errno(text, err), text);
}

/* ---- Memory the kernel must refuse ---- */

/* An address the kernel cannot read: the page after a mapped one, kept inaccessible rather
 * than unmapped, since the next small mmap (a runtime's, a sanitizer's) would fill the hole. */
static void *unmapped(void)
{
    static char *page;

    if (page == NULL) {
        long size = sysconf(_SC_PAGESIZE);
        page = mmap(NULL, 2 * (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED || mprotect(page + size, (size_t)size, PROT_NONE) != 0)
            die_errno("mmap");
    }
    return page + sysconf(_SC_PAGESIZE);
}

/* The last n bytes of a page followed by one the kernel cannot read. */
static void *at_page_end(size_t n)
{
    return (char *)unmapped() - n;
}

static long futex(void *addr, int op, uint32_t val, const struct timespec *ts, uint32_t val3)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, val3);
}

static pid_t fork_or_die(void)
{
    pid_t pid = fork();

    if (pid < 0)
        die_errno("fork");
    return pid;
}

/* The exit status of a child, or -1 when it did not exit normally. */
static int child_status(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die_errno("waitpid");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- futex ---- */

/* Wakes the futex until the kernel says it woke a waiter; gives up once *word is not 0. */
static int wake_until_woken(_Atomic uint32_t *word)
{
    while (atomic_load(word) == 0) {
        if (futex(word, FUTEX_WAKE, 1, NULL, 0) > 0)
            return 0;
        usleep(RETRY_US);
    }
    return 1;
}

static int futex_waker(const char *fd_text)
{
    int fd = (int)parse_long(fd_text, 0, INT_MAX, "fd");
    void *word = mmap(NULL, sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

    if (word == MAP_FAILED)
        die_errno("mmap");
    return wake_until_woken(word);
}

/* A word in memory shared with other processes, 0; on a memfd, so an exec'd child can map it. */
static _Atomic uint32_t *shared_word(int *fd)
{
    *fd = memfd_create("futex", 0);
    if (*fd < 0 || ftruncate(*fd, sizeof(uint32_t)) != 0)
        die_errno("memfd_create");
    void *word = mmap(NULL, sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (word == MAP_FAILED)
        die_errno("mmap");
    return word;
}

/* The waiter is this process; the waker, another program (this one exec'd). */
static void check_futex_woken_by_other_process(void)
{
    int fd;
    _Atomic uint32_t *word = shared_word(&fd);
    struct timespec give_up = { GIVE_UP_S, 0 };
    pid_t pid = fork_or_die();

    if (pid == 0) {
        char fd_text[16];
        snprintf(fd_text, sizeof fd_text, "%d", fd);
        execl("/proc/self/exe", program_invocation_name, "futex-waker", fd_text, (char *)NULL);
        _exit(127);
    }
    const char *waited = outcome(futex(word, FUTEX_WAIT, 0, &give_up, 0));
    atomic_store(word, 1);
    int woke = child_status(pid);
    munmap(word, sizeof *word);
    close(fd);
    snprintf(why, sizeof why, "wait %s, waker %s", waited, woke == 0 ? "woke it" : "woke nobody");
    report_result("futex_woken_by_other_process", strcmp(waited, "0") == 0 && woke == 0, why);
}

/* The waiter is a forked child; the waker, this process. */
static void check_futex_wakes_other_process(void)
{
    int fd;
    _Atomic uint32_t *word = shared_word(&fd);
    pid_t pid = fork_or_die();

    if (pid == 0) {
        struct timespec give_up = { GIVE_UP_S, 0 };
        long r = futex(word, FUTEX_WAIT, 0, &give_up, 0);
        int err = errno;
        atomic_store(word, 1);          /* the parent stops waking */
        _exit(r == 0 ? 0 : err == ETIMEDOUT ? 1 : 2);
    }
    int woke = wake_until_woken(word);
    int waited = child_status(pid);
    munmap(word, sizeof *word);
    close(fd);
    snprintf(why, sizeof why, "child's wait %s, %s", waited == 0 ? "woken" : waited == 1 ? "timed out" : "failed",
             woke == 0 ? "woke it" : "woke nobody");
    report_result("futex_wakes_other_process", waited == 0 && woke == 0, why);
}

/* The kernel keeps private and shared futexes apart, even on one word: a thread waits on a
 * private one while this one wakes the shared one (which must wake nobody), then the
 * private one, until that wakes the thread. The wake leaves the thread's errno as it was. */
static _Atomic uint32_t private_word;
static _Atomic bool private_waiter_woken;
static _Atomic int private_waiter_errno;

static void *wait_private(void *unused)
{
    (void)unused;
    long r;
    do {
        errno = EDOM;
        r = futex(&private_word, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
    } while (r != 0 && errno == EINTR);
    atomic_store(&private_waiter_errno, errno);
    atomic_store(&private_waiter_woken, true);
    return NULL;
}

static void check_futex_kinds_apart(void)
{
    pthread_t thread;
    long shared_woke = 0, private_woke;

    if (pthread_create(&thread, NULL, wait_private, NULL) != 0)
        die("pthread_create");
    do {
        shared_woke += futex(&private_word, FUTEX_WAKE, 1, NULL, 0);
        private_woke = futex(&private_word, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
        usleep(RETRY_US);
    } while (private_woke == 0 && !atomic_load(&private_waiter_woken));
    pthread_join(thread, NULL);
    int waiter_errno = atomic_load(&private_waiter_errno);
    snprintf(why, sizeof why, "shared wakes woke %ld, the private wake %ld, the waiter's errno %s after it",
             shared_woke, private_woke, errname(waiter_errno));
    report_result("futex_private_and_shared_apart", shared_woke == 0 && private_woke == 1 && waiter_errno == EDOM,
                  why);
}

/* futex_KIND_WHAT, for the private and the shared kind of futex. */
static void check_futex(const char *kind, const char *what, long r, int err)
{
    char name[64];

    snprintf(name, sizeof name, "futex_%s_%s", kind, what);
    check_errno(name, r, err);
}

static void check_futex_arguments(void)
{
    static uint32_t word = 7;
    static uint32_t words[2];
    struct timespec zero = { 0, 0 }, tiny = { 0, 1000 };
    struct timespec bad_nsec = { 0, 1000000000 }, negative = { -1, 0 };
    void *misaligned = (char *)words + 1;

    for (int shared = 0; shared < 2; shared++) {
        const char *kind = shared ? "shared" : "private";
        int flag = shared ? 0 : FUTEX_PRIVATE_FLAG;
        int wait = FUTEX_WAIT | flag, wake = FUTEX_WAKE | flag;

        check_futex(kind, "value_differs", futex(&word, wait, 6, NULL, 0), EAGAIN);
        check_futex(kind, "times_out", futex(&word, wait, 7, &tiny, 0), ETIMEDOUT);
        check_futex(kind, "zero_timeout", futex(&word, wait, 7, &zero, 0), ETIMEDOUT);
        check_futex(kind, "wait_unmapped", futex(unmapped(), wait, 0, NULL, 0), EFAULT);
        /* A private wake never reads the word: the kernel's answer is recorded. */
        check_futex(kind, "wake_unmapped", futex(unmapped(), wake, 1, NULL, 0), 0);
        check_futex(kind, "wait_misaligned", futex(misaligned, wait, 0, NULL, 0), EINVAL);
        check_futex(kind, "wake_misaligned", futex(misaligned, wake, 1, NULL, 0), EINVAL);
        check_futex(kind, "timeout_nsec_too_big", futex(&word, wait, 7, &bad_nsec, 0), EINVAL);
        check_futex(kind, "timeout_negative", futex(&word, wait, 7, &negative, 0), EINVAL);
        check_futex(kind, "timeout_unmapped", futex(&word, wait, 7, unmapped(), 0), EFAULT);
        check_futex(kind, "wait_bitset_zero", futex(&word, FUTEX_WAIT_BITSET | flag, 7, NULL, 0), EINVAL);
        check_futex(kind, "wake_bitset_zero", futex(&word, FUTEX_WAKE_BITSET | flag, 1, NULL, 0), EINVAL);
    }
}

/* ---- sigaction ---- */

static _Atomic int handled;

static void count_signal(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled, 1);
}

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000     /* the kernel's flag, which glibc's sigaction always sets */
#endif

/* The kernel's struct sigaction, for rt_sigaction without glibc. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static const char *describe_action(const struct sigaction *sa, void (*mine)(int))
{
    static char text[160];

    snprintf(text, sizeof text, "handler %s, flags %#x, restorer %s, mask %s",
             sa->sa_handler == SIG_DFL ? "SIG_DFL" : sa->sa_handler == SIG_IGN ? "SIG_IGN"
                 : sa->sa_handler == mine ? "the program's" : "another",
             (unsigned)sa->sa_flags, sa->sa_restorer != NULL ? "set" : "NULL",
             sigismember(&sa->sa_mask, SIGUSR2) == 1 ? "SIGUSR2" : "empty");
    return text;
}

static void install(int sig, void (*handler)(int), int flags)
{
    struct sigaction sa = { .sa_handler = handler, .sa_flags = flags };

    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    if (sigaction(sig, &sa, NULL) != 0)
        die_errno("sigaction");
}

static void check_sigaction(void)
{
    struct sigaction old, dfl = { .sa_handler = SIG_DFL };

    install(SIGUSR1, count_signal, SA_RESTART);
    sigaction(SIGUSR1, NULL, &old);
    report_result("sigaction_old_action", old.sa_handler == count_signal && (old.sa_flags & SA_RESTART)
                  && (old.sa_flags & SA_RESTORER) && old.sa_restorer != NULL,
                  describe_action(&old, count_signal));

    install(SIGUSR1, count_signal, SA_RESTART | SA_SIGINFO);
    sigaction(SIGUSR1, &dfl, &old);
    report_result("sigaction_old_action_siginfo", true, describe_action(&old, count_signal));

    sigaction(SIGURG, NULL, &old);
    report_result("sigaction_never_set", true, describe_action(&old, count_signal));
    sigaction(SIGSEGV, NULL, &old);
    report_result("sigaction_sigsegv_default", true, describe_action(&old, count_signal));

    /* SA_RESETHAND: after one signal the kernel holds SIG_DFL, with the flags it had. */
    install(SIGUSR1, count_signal, SA_RESETHAND);
    raise(SIGUSR1);
    sigaction(SIGUSR1, NULL, &old);
    report_result("sigaction_after_resethand", true, describe_action(&old, count_signal));

    /* The old action, reinstalled without glibc, returns through its restorer. */
    install(SIGUSR1, count_signal, 0);
    sigaction(SIGUSR1, NULL, &old);
    struct kernel_sigaction raw = { old.sa_handler, (unsigned long)old.sa_flags, old.sa_restorer, 0 };
    memcpy(&raw.mask, &old.sa_mask, sizeof raw.mask);
    int before = atomic_load(&handled);
    long r = syscall(SYS_rt_sigaction, SIGUSR1, &raw, NULL, sizeof raw.mask);
    if (r == 0)
        raise(SIGUSR1);
    snprintf(why, sizeof why, "rt_sigaction %s, handler ran %d time(s) and returned", outcome(r),
             atomic_load(&handled) - before);
    report_result("sigaction_reinstalled_raw", r == 0 && atomic_load(&handled) == before + 1, why);
    sigaction(SIGUSR1, &dfl, NULL);
}

/* ---- calls the kernel answers at once ---- */

static int udp_socket(void)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die_errno("udp socket");
    return fd;
}

/* Fills a pipe until one more byte would block, then makes it blocking again. */
static void fill_pipe(int wfd)
{
    static const char chunk[4096];

    fcntl(wfd, F_SETFL, O_NONBLOCK);
    while (write(wfd, chunk, sizeof chunk) > 0)
        ;
    while (write(wfd, chunk, 1) == 1)
        ;
    fcntl(wfd, F_SETFL, 0);
}

static void check_zero(const char *name, long r)
{
    const char *text = outcome(r);

    report_result(name, expect_result(text, "0"), text);
}

/* A read shorter than the 8 bytes (or signalfd_siginfo) the fd hands out. */
static void check_short_read(const char *name, int fd)
{
    char buf[4];

    check_errno(name, read(fd, buf, sizeof buf), EINVAL);
    close(fd);
}

static void check_at_once(void)
{
    int p[2], sv[2], udp = udp_socket(), tcp = socket(AF_INET, SOCK_STREAM, 0);
    char buf[16];

    make_pipe(p);
    make_socketpair(sv, 0);
    check_errno("accept_udp", accept(udp, NULL, NULL), EOPNOTSUPP);
    check_errno("accept_pipe", accept(p[0], NULL, NULL), ENOTSOCK);
    check_errno("accept_not_listening", accept(tcp, NULL, NULL), EINVAL);
    check_errno("accept_connected", accept(sv[0], NULL, NULL), EINVAL);
    close(tcp);
    close_pair(sv);

    check_errno("write_pipe_read_end", write(p[0], "x", 1), EBADF);
    check_errno("read_pipe_write_end", read(p[1], buf, 1), EBADF);
    check_zero("read_zero_empty_pipe", read(p[0], buf, 0));
    fill_pipe(p[1]);
    check_zero("write_zero_full_pipe", write(p[1], buf, 0));
    check_errno("recv_pipe", recv(p[0], buf, 1, 0), ENOTSOCK);
    check_errno("send_pipe", send(p[1], buf, 1, 0), ENOTSOCK);
    close_pair(p);

    check_errno("recv_errqueue_empty", recv(udp, buf, sizeof buf, MSG_ERRQUEUE), EAGAIN);
    close(udp);

    int tty = posix_openpt(O_RDWR | O_NOCTTY);
    if (tty >= 0 && grantpt(tty) == 0 && unlockpt(tty) == 0) {
        int pts = open(ptsname(tty), O_RDWR | O_NOCTTY);
        check_zero("read_zero_terminal", read(pts, buf, 0));
        close(pts);
    } else {
        report_result("read_zero_terminal", true, "no pseudo-terminal here");
    }
    if (tty >= 0)
        close(tty);

    check_short_read("eventfd_short_read", eventfd(0, 0));
    check_short_read("timerfd_short_read", timerfd_create(CLOCK_MONOTONIC, 0));
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    check_short_read("signalfd_short_read", signalfd(-1, &usr2, 0));
}

/* sigwaitinfo for a signal with a handler and not blocked: Linux gives it to sigwaitinfo, the
 * handler does not run. A child sends it over and over until the parent has it. */
static void check_sigwaitinfo_unblocked(void)
{
    sigset_t set;

    install(SIGUSR1, count_signal, 0);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pid_t parent = getpid(), pid = fork_or_die();
    if (pid == 0) {
        for (;;) {
            kill(parent, SIGUSR1);
            usleep(RETRY_US);
        }
    }
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    const char *r = outcome(sig);
    kill(pid, SIGKILL);
    child_status(pid);
    signal(SIGUSR1, SIG_IGN);
    snprintf(why, sizeof why, "%s%s", r, sig == SIGUSR1 && info.si_pid == pid ? " (SIGUSR1 from the child)" : "");
    report_result("sigwaitinfo_unblocked", sig == SIGUSR1, why);
}

/* ---- MSG_WAITALL ---- */

static int listener(struct sockaddr_in *addr)
{
    socklen_t len = sizeof *addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    *addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 4) != 0
        || getsockname(fd, (struct sockaddr *)addr, &len) != 0)
        die_errno("listener");
    return fd;
}

/* A TCP connection on loopback: sv[0] accepted, sv[1] connected. */
static void make_tcp_pair(int sv[2])
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);

    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (sv[1] < 0 || connect(sv[1], (struct sockaddr *)&addr, sizeof addr) != 0 || (sv[0] = accept(lfd, NULL, NULL)) < 0)
        die_errno("tcp pair");
    close(lfd);
}

/* Waits until process pid sleeps (state S: the child below sleeps only in its receive) or
 * has ended (Z). */
static void wait_until_asleep(pid_t pid)
{
    char path[64], stat[256];

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (;;) {
        FILE *f = fopen(path, "r");
        size_t n = f != NULL ? fread(stat, 1, sizeof stat - 1, f) : 0;
        if (f != NULL)
            fclose(f);
        stat[n] = '\0';
        const char *state = strrchr(stat, ')');
        if (state == NULL || (state[1] == ' ' && (state[2] == 'S' || state[2] == 'Z')))
            return;
        usleep(RETRY_US);
    }
}

/* MSG_PEEK | MSG_WAITALL on the stream sv[0] -> sv[1]: "a" is there, a child peeks at it
 * and sleeps (on TCP it waits for the whole length), and only then does "b" come. */
static void check_peek_waitall(const char *name, int sv[2])
{
    char buf[4] = "";

    if (write(sv[1], "a", 1) != 1)
        die_errno("write");
    pid_t pid = fork_or_die();
    if (pid == 0) {
        ssize_t n = recv(sv[0], buf, 2, MSG_PEEK | MSG_WAITALL);
        _exit(n == 1 && buf[0] == 'a' ? 1 : n == 2 && memcmp(buf, "ab", 2) == 0 ? 2 : 3);
    }
    wait_until_asleep(pid);
    if (write(sv[1], "b", 1) != 1)
        die_errno("write");
    int peeked = child_status(pid);
    ssize_t n = recv(sv[0], buf, sizeof buf, MSG_DONTWAIT);
    snprintf(why, sizeof why, "the child peeked %s; then %zd bytes were there to read",
             peeked == 1 ? "\"a\"" : peeked == 2 ? "\"ab\"" : "something else", n);
    report_result(name, (peeked == 1 || peeked == 2) && n == 2, why);
    close_pair(sv);
}

static void check_waitall(void)
{
    int udp = udp_socket(), sv[2];
    struct sockaddr_in self;
    socklen_t len = sizeof self;
    char buf[16] = "";

    /* A datagram comes whole: MSG_WAITALL does not wait for more. */
    getsockname(udp, (struct sockaddr *)&self, &len);
    sendto(udp, "abc", 3, 0, (struct sockaddr *)&self, len);
    check_errno("recv_waitall_datagram", recv(udp, buf, sizeof buf, MSG_WAITALL), 0);
    close(udp);

    make_socketpair(sv, 0);
    check_peek_waitall("recv_peek_waitall_unix", sv);
    make_tcp_pair(sv);
    check_peek_waitall("recv_peek_waitall_tcp", sv);
}

/* ---- connect ---- */

static void check_connect(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    const char *first = outcome(connect(fd, (struct sockaddr *)&addr, sizeof addr));
    const char *second = outcome(connect(fd, (struct sockaddr *)&addr, sizeof addr));

    snprintf(why, sizeof why, "%s, then %s", first, second);
    report_result("connect_twice", strcmp(first, "0") == 0 && expect_errno(second, EISCONN), why);
    close(fd);

    close(lfd);           /* nothing listens on that port now */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    first = outcome(connect(fd, (struct sockaddr *)&addr, sizeof addr));
    second = outcome(connect(fd, (struct sockaddr *)&addr, sizeof addr));
    snprintf(why, sizeof why, "%s, then %s", first, second);
    report_result("connect_refused_twice", expect_errno(first, ECONNREFUSED) && expect_errno(second, ECONNREFUSED), why);
    close(fd);
}

/* ---- arguments the kernel checks ---- */

static void check_efault(const char *name, long r) { check_errno(name, r, EFAULT); }
static void check_einval(const char *name, long r) { check_errno(name, r, EINVAL); }

/* The kernel reads only the bytes of a fd set that nfds covers. */
static void check_select_small_sets(void)
{
    int p[2];
    make_pipe(p);
    if (p[1] >= 64)
        die("pipe fds above 63");
    fd_set *rd = at_page_end(8);        /* room for fds 0 to 63 only */
    struct timeval tv = { 0, 1000 };
    memset(rd, 0, 8);
    FD_SET(p[0], rd);
    const char *none = outcome(select(p[0] + 1, rd, NULL, NULL, &tv));
    bool cleared = !FD_ISSET(p[0], rd);
    if (write(p[1], "x", 1) != 1)
        die_errno("write");
    FD_SET(p[0], rd);
    tv = (struct timeval){ 5, 0 };
    const char *one = outcome(select(p[0] + 1, rd, NULL, NULL, &tv));
    snprintf(why, sizeof why, "nothing ready %s (set %s), then %s (set %s)", none, cleared ? "cleared" : "kept",
             one, FD_ISSET(p[0], rd) ? "has the fd" : "lost the fd");
    report_result("select_small_sets", strcmp(none, "0") == 0 && strcmp(one, "1") == 0, why);
    close_pair(p);
}

static void check_arguments(void)
{
    int p[2], sv[2], ep = epoll_create1(0);
    struct epoll_event event;
    struct timespec bad_nsec = { 0, 1000000000 }, negative_nsec = { 0, -1 }, negative = { -1, 0 };
    struct timeval tv_negative = { -1, 0 }, tv_bad_usec = { 0, -1 };

    make_pipe(p);
    check_efault("poll_unmapped_fds", poll(unmapped(), 1, 1000));
    check_efault("ppoll_unmapped_fds", ppoll(unmapped(), 1, &(struct timespec){ 1, 0 }, NULL));
    check_einval("ppoll_timeout_nsec_too_big", ppoll(NULL, 0, &bad_nsec, NULL));
    check_einval("ppoll_timeout_negative", ppoll(NULL, 0, &negative, NULL));

    check_efault("select_unmapped_set", select(p[0] + 1, unmapped(), NULL, NULL, &(struct timeval){ 1, 0 }));
    check_einval("select_timeout_negative", select(0, NULL, NULL, NULL, &tv_negative));
    check_einval("select_timeout_usec_negative", select(0, NULL, NULL, NULL, &tv_bad_usec));
    check_efault("pselect_unmapped_set", pselect(p[0] + 1, unmapped(), NULL, NULL, &(struct timespec){ 1, 0 }, NULL));
    check_einval("pselect_timeout_nsec_too_big", pselect(0, NULL, NULL, NULL, &bad_nsec, NULL));
    check_einval("pselect_timeout_negative", pselect(0, NULL, NULL, NULL, &negative, NULL));
    check_select_small_sets();

    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &(struct epoll_event){ .events = EPOLLIN });
    check_efault("epoll_pwait2_unmapped_timeout", epoll_pwait2(ep, &event, 1, unmapped(), NULL));
    check_einval("epoll_pwait2_timeout_nsec_too_big", epoll_pwait2(ep, &event, 1, &bad_nsec, NULL));
    check_einval("epoll_pwait2_timeout_negative", epoll_pwait2(ep, &event, 1, &negative, NULL));
    close(ep);

    make_socketpair(sv, 0);
    check_efault("sendmsg_unmapped_msghdr", sendmsg(sv[0], unmapped(), 0));
    struct msghdr msg = { .msg_iov = unmapped(), .msg_iovlen = 1 };
    check_efault("sendmsg_unmapped_iov", sendmsg(sv[0], &msg, 0));
    check_efault("recvmsg_unmapped_msghdr", recvmsg(sv[0], unmapped(), MSG_WAITALL));
    check_efault("writev_unmapped_iov", writev(p[1], unmapped(), 2));
    check_efault("readv_unmapped_iov", readv(p[0], unmapped(), 2));
    static struct iovec many[IOV_MAX + 1];
    volatile int negative_count = -1;      /* the compiler would refuse a constant */
    check_einval("writev_negative_count", writev(sv[0], many, negative_count));
    check_einval("readv_too_many", readv(sv[0], many, IOV_MAX + 1));
    close_pair(sv);
    close_pair(p);

    check_efault("sigsuspend_unmapped_mask", sigsuspend(unmapped()));
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    check_efault("sigtimedwait_unmapped_set", sigtimedwait(unmapped(), NULL, &(struct timespec){ 1, 0 }));
    check_efault("sigtimedwait_unmapped_timeout", sigtimedwait(&usr2, NULL, unmapped()));
    check_einval("sigtimedwait_timeout_nsec_too_big", sigtimedwait(&usr2, NULL, &bad_nsec));
    check_einval("sigtimedwait_timeout_negative", sigtimedwait(&usr2, NULL, &negative));
    sigprocmask(SIG_UNBLOCK, &usr2, NULL);

    check_efault("nanosleep_unmapped", nanosleep(unmapped(), NULL));
    check_einval("nanosleep_nsec_negative", nanosleep(&negative_nsec, NULL));
    check_einval("nanosleep_negative", nanosleep(&negative, NULL));
    int err = clock_nanosleep(CLOCK_MONOTONIC, 0, &bad_nsec, NULL);
    report_result("clock_nanosleep_nsec_too_big", err == EINVAL, errname(err));

    /* Timed waits of libc's own: its answers, whatever they are. */
    sem_t sem;
    sem_init(&sem, 0, 0);
    report_result("sem_timedwait_nsec_too_big", true, outcome(sem_timedwait(&sem, &bad_nsec)));
    report_result("sem_timedwait_negative", true, outcome(sem_timedwait(&sem, &negative)));
    sem_destroy(&sem);
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&mutex);
    report_result("cond_timedwait_nsec_too_big", true, errname(pthread_cond_timedwait(&cond, &mutex, &bad_nsec)));
    report_result("cond_timedwait_negative", true, errname(pthread_cond_timedwait(&cond, &mutex, &negative)));
    report_result("mutex_timedlock_nsec_too_big", true, errname(pthread_mutex_timedlock(&mutex, &bad_nsec)));
    report_result("mutex_timedlock_negative", true, errname(pthread_mutex_timedlock(&mutex, &negative)));
    pthread_mutex_unlock(&mutex);
}

/* ---- popen in a forked child ---- */

/* In a forked child that first sets `variables` environment variables (so that environ is
 * an array setenv allocated, which the next setenv may move), popen and pclose. */
static void check_popen_in_child(int variables)
{
    char name[64];
    pid_t pid = fork_or_die();

    snprintf(name, sizeof name, "popen_in_forked_child_after_%d_setenv", variables);
    if (pid == 0) {
        for (int i = 0; i < variables; i++) {
            char variable[32];
            snprintf(variable, sizeof variable, "SYSCALL_SEMANTICS_%d", i);
            setenv(variable, "1", 1);
        }
        FILE *f = popen("echo from the shell", "r");
        char line[64] = "";
        if (f == NULL) {
            printf("FAIL %s: popen: %s\n", name, errname(errno));
            fflush(stdout);
            _exit(1);
        }
        if (fgets(line, sizeof line, f) == NULL)
            line[0] = '\0';
        line[strcspn(line, "\n")] = '\0';
        int status = pclose(f);
        bool passed = strcmp(line, "from the shell") == 0 && status == 0;
        printf("%s %s: read \"%s\", pclose %d\n", passed ? "ok" : "FAIL", name, line, status);
        fflush(stdout);
        _exit(passed ? 0 : 1);
    }
    failures += child_status(pid) != 0;
}

static void check_popen(void)
{
    for (int variables = 0; variables < 3; variables++)
        check_popen_in_child(variables);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "futex-waker") == 0)
        return futex_waker(argv[2]);
    if (argc != 1)
        die("usage: syscall_semantics");

    static void (*const sections[])(void) = {
        check_futex_woken_by_other_process, check_futex_wakes_other_process, check_futex_kinds_apart,
        check_futex_arguments,
        check_sigaction, check_at_once, check_sigwaitinfo_unblocked, check_waitall, check_connect,
        check_arguments, check_popen,
    };
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        alarm(WATCHDOG_S);
        sections[i]();
    }
    return failures != 0;
}
