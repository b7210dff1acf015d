/*
 * filecopy: regular-file I/O from threads.
 *
 *   filecopy copy SRC DST     copies SRC to DST with open, read and write (64 KiB at a
 *                             time), fsync and close, while a ticker thread sleeps 2 ms
 *                             at a time; then reads DST back with pread and checks that it
 *                             matches SRC, and that FORTIFY's __open_2 and __pread_chk work;
 *                             prints the bytes copied
 *   filecopy bench FILE N SIZE  reads SIZE bytes at offset 0 of FILE N times with pread,
 *                             then N times with read (after lseek), and prints the time per
 *                             call; another thread exists meanwhile, as in a real program
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <pthread.h>

static _Atomic bool quit;
static _Atomic uint64_t worst_gap;
static _Atomic long ticks;

static void *ticker(void *arg)
{
    (void)arg;
    uint64_t last = now_ns();
    while (!quit) {
        sleep_ms(2);
        uint64_t now = now_ns();
        if (now - last > worst_gap)
            worst_gap = now - last;
        last = now;
        ticks++;
    }
    return NULL;
}

static int copy(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in < 0 || out < 0)
        die_errno("open");
    enum { CHUNK = 64 * 1024 };
    char *buf = malloc(CHUNK), *back = malloc(CHUNK);
    long long total = 0;
    ssize_t n;
    while ((n = read(in, buf, CHUNK)) > 0) {
        if (write(out, buf, (size_t)n) != n)
            die_errno("write");
        total += n;
    }
    if (n < 0)
        die_errno("read");
    if (fsync(out) != 0 || fdatasync(out) != 0)
        die_errno("fsync");
    close(out);

    /* Read both back with pread, in pieces, and compare. */
    out = open(dst, O_RDONLY | O_CLOEXEC);
    long long off = 0, same = 0;
    while ((n = pread(in, buf, CHUNK, off)) > 0) {
        if (pread(out, back, CHUNK, off) != n)
            die("pread of the copy came short at %lld", off);
        same += memcmp(buf, back, (size_t)n) == 0 ? n : 0;
        off += n;
    }
    close(out);

    /* FORTIFY's entry points, as a Debian build calls them: open with flags the compiler
     * cannot see (__open_2), pread into a buffer of known size (__pread_chk). */
    volatile int rdonly = O_RDONLY;
    int again = open(src, rdonly | O_CLOEXEC);
    char head[64];
    size_t want = sizeof head - (size_t)rdonly;
    bool fortified_ok = again >= 0 && pread(again, head, want, 0) == (ssize_t)want
                        && pread(in, buf, want, 0) == (ssize_t)want && memcmp(head, buf, want) == 0;
    close(again);
    close(in);
    free(buf);
    free(back);
    printf("copied %lld bytes; %lld bytes read back identical; fortified calls %s\n", total, same,
           fortified_ok ? "ok" : "FAILED");
    return same == total && fortified_ok ? 0 : 1;
}

static int bench(const char *file, long n, long size)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno("open");
    char *buf = malloc((size_t)size);
    for (int i = 0; i < 1000; i++)       /* warm the page cache and the pool */
        if (pread(fd, buf, (size_t)size, 0) < 0)
            die_errno("pread");
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (pread(fd, buf, (size_t)size, 0) != size)
            die("short pread");
    uint64_t t1 = now_ns();
    for (long i = 0; i < n; i++) {
        lseek(fd, 0, SEEK_SET);
        if (read(fd, buf, (size_t)size) != size)
            die("short read");
    }
    uint64_t t2 = now_ns();
    printf("pread %ld B: %.0f ns per call\nlseek+read %ld B: %.0f ns per call\n", size,
           (double)(t1 - t0) / n, size, (double)(t2 - t1) / n);
    close(fd);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    pthread_t t;
    pthread_create(&t, NULL, ticker, NULL);
    int r;
    if (argc == 4 && strcmp(argv[1], "copy") == 0)
        r = copy(argv[2], argv[3]);
    else if (argc == 5 && strcmp(argv[1], "bench") == 0)
        r = bench(argv[2], parse_long(argv[3], 1, 100000000, "N"), parse_long(argv[4], 1, 1 << 24, "SIZE"));
    else
        die("usage: filecopy copy SRC DST | filecopy bench FILE N SIZE");
    quit = true;
    pthread_join(t, NULL);
    fprintf(stderr, "ticker: %ld ticks, longest gap %.1f ms\n", (long)ticks, worst_gap / 1e6);
    return r;
}
