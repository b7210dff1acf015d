/*
 * close_all: a daemon's start-up, which closes every fd but stdio (close_range, closefrom or
 * a close of each number), then threads that wait: two pass a message through a pipe with
 * blocking reads, one sleeps, and a forked child writes through the pipe. Under coop the
 * hubs' own fds must survive the closes, and the fds made after them must not take their
 * numbers (varnishd's listening socket once became its child's new epoll set); the result
 * lines are the same as natively.
 *
 * A thread runs before the closes, and so does coop's first use of libunwind, whose pipe
 * (read and written to check addresses while unwinding code without unwind information)
 * must not take the program's numbers either: the first fd opened after that thread is
 * the lowest free one, as natively, and two threads that spin in such code (and are
 * preempted, or asked to be, on one hub) leave a pipe made after the closes as it was.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int pipe_fds[2];

/* Counts down its argument; no unwind information, so an unwinder checks each address. */
void spin_without_unwind_info(unsigned long n);
__asm__(".pushsection .text\n"
        ".globl spin_without_unwind_info\n"
        ".type spin_without_unwind_info, @function\n"
        "spin_without_unwind_info:\n"
        "1: pause\n"
        "   dec %rdi\n"
        "   jnz 1b\n"
        "   ret\n"
        ".size spin_without_unwind_info, . - spin_without_unwind_info\n"
        ".popsection\n");

static void *spinner(void *unused)
{
    spin_without_unwind_info(20 * 1000 * 1000);
    return unused;
}

static void *nothing(void *unused) { return unused; }

static void *reader(void *unused)
{
    (void)unused;
    char buf[16] = { 0 };
    ssize_t n = read(pipe_fds[0], buf, sizeof buf - 1);
    printf("reader: %zd bytes, \"%s\"\n", n, buf);
    return NULL;
}

static void *sleeper(void *unused)
{
    (void)unused;
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    int r = nanosleep(&ts, NULL);
    printf("sleeper: nanosleep %d\n", r);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "range";
    pthread_t first;
    pthread_create(&first, NULL, nothing, NULL);
    pthread_join(first, NULL);
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    printf("first fd after a thread: %d\n", probe);
    close(probe);
    if (strcmp(how, "range") == 0) {
        printf("close_range(3, ~0): %d\n", close_range(3, ~0u, 0));
    } else if (strcmp(how, "from") == 0) {
        closefrom(3);
        printf("closefrom(3)\n");
    } else {
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        printf("close(3..1023)\n");
    }
    fflush(stdout);
    int untouched[2];       /* first: the lowest free numbers, which libunwind's pipe once had */
    if (pipe2(untouched, O_NONBLOCK) != 0 || pipe(pipe_fds) != 0)
        return 1;
    /* A number the program names itself, as a shell's `exec 9>&1` then `exec 9>&-` does. */
    int named = dup2(pipe_fds[1], 9);
    printf("dup2 onto 9: %d, then close(9): %d\n", named, close(9));
    pthread_t r, s;
    pthread_create(&r, NULL, reader, NULL);
    pthread_create(&s, NULL, sleeper, NULL);
    pthread_join(s, NULL);
    if (write(pipe_fds[1], "hello", 5) != 5)
        return 1;
    pthread_join(r, NULL);
    /* A forked child writes through the pipe made after the closes. */
    pid_t child = fork();
    if (child == 0)
        _exit(write(pipe_fds[1], "child", 5) == 5 ? 7 : 8);
    int status = 0;
    waitpid(child, &status, 0);
    char buf[16] = { 0 };
    ssize_t n = read(pipe_fds[0], buf, sizeof buf - 1);
    printf("child: exit %d, its message %zd bytes, \"%s\"\n", WEXITSTATUS(status), n, buf);
    pthread_t spinners[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&spinners[i], NULL, spinner, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(spinners[i], NULL);
    n = read(untouched[0], buf, sizeof buf);
    printf("a pipe nobody wrote to: %zd bytes (%s)\n", n, n < 0 ? strerror(errno) : "written by someone");
    return 0;
}
