/* Runtime messages on stderr, written with one system call each so lines never interleave. */
#ifndef COOP_LOG_H
#define COOP_LOG_H

#include <stddef.h>

enum coop_log_level { COOP_LOG_ERROR, COOP_LOG_WARN, COOP_LOG_INFO, COOP_LOG_DEBUG };

extern enum coop_log_level coop_log_level;

void coop_log(enum coop_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "coop: ..." and aborts: for broken invariants only. */
void coop_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define coop_warn(...) coop_log(COOP_LOG_WARN, __VA_ARGS__)
#define coop_info(...) coop_log(COOP_LOG_INFO, __VA_ARGS__)
#define coop_debug(...) coop_log(COOP_LOG_DEBUG, __VA_ARGS__)

/* Writes a whole buffer to stderr. */
void coop_write_stderr(const char *buf, size_t len);

#endif
