#include "log.h"

#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "sys.h"

enum coop_log_level coop_log_level = COOP_LOG_WARN;

void coop_write_stderr(const char *buf, size_t len)
{
    while (len > 0) {
        long n = coop_sys(SYS_write, STDERR_FILENO, buf, len);
        if (n == -4 /* EINTR */)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void vlog(const char *fmt, va_list ap)
{
    char line[512];
    int n = snprintf(line, sizeof line - 1, "coop: ");
    n += vsnprintf(line + n, sizeof line - 1 - (size_t)n, fmt, ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    coop_write_stderr(line, (size_t)n);
}

void coop_log(enum coop_log_level level, const char *fmt, ...)
{
    if (level > coop_log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void coop_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
    abort();
}
