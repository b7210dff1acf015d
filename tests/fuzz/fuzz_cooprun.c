/*
 * libFuzzer target: cooprun's option parsing. The input, split at NUL bytes, becomes
 * cooprun's arguments, followed by `-- true`. Whatever the arguments, cooprun must end
 * with true's status, the library's bad-setting status (2), or one of its own (125 bad
 * usage, 126 cannot run, 127 not found), and a usage error must be one line. No argument
 * may name a path ('/' becomes '_') and PATH holds only `true`, so nothing else can run.
 */

#include <assert.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *cooprun;
    if (cooprun == NULL && (cooprun = getenv("COOPRUN")) == NULL)
        cooprun = "scripts/cooprun";
    if (getenv("COOP_FUZZ_PATH") == NULL) {
        char dir[] = "/tmp/coop-fuzz-path.XXXXXX";
        if (mkdtemp(dir) == NULL)
            abort();
        char link[sizeof dir + 8];
        snprintf(link, sizeof link, "%s/true", dir);
        if (symlink("/bin/true", link) != 0)
            abort();
        setenv("COOP_FUZZ_PATH", dir, 1);
        setenv("PATH", dir, 1);
    }
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    for (size_t i = 0; i < size; i++)
        if (text[i] == '/')
            text[i] = '_';

    char *argv[MAX_ARGS + 4] = { (char *)cooprun };
    int argc = 1;
    for (char *arg = text; arg < text + size && argc <= MAX_ARGS; arg += strlen(arg) + 1)
        argv[argc++] = arg;
    argv[argc++] = "--";
    argv[argc++] = "true";
    int err[2];
    if (pipe(err) != 0)
        abort();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(err[1], 2);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        execv(cooprun, argv);
        _exit(99);
    }
    close(err[1]);
    char out[4096];
    size_t len = 0;
    ssize_t n;
    while ((n = read(err[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(err[0]);
    int status;
    waitpid(pid, &status, 0);
    assert(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    assert(code == 0 || code == 2 || code == 125 || code == 126 || code == 127);

    if (code == 125)
        assert(len > 0 && strchr(out, '\n') == out + len - 1);
    free(text);
    return 0;
}
