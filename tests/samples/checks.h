/*
 * For the samples that print one line per check (torture, timedwaits, semantics...): a check
 * returns true when it passed, or false with why[] filled by failf(), or skip()'s true when
 * it cannot run here. Include after common.h.
 */
#ifndef COOP_SAMPLES_CHECKS_H
#define COOP_SAMPLES_CHECKS_H

static int failures;
static char why[512];
static bool skipped;

__attribute__((format(printf, 1, 2))) static bool failf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return false;
}

/* A check that cannot run here (why says why) passes as skipped. */
static inline bool skip(const char *reason)
{
    snprintf(why, sizeof why, "%s", reason);
    skipped = true;
    return true;
}

/* Prints the line of one check: "ok NAME: RESULT", "skip NAME: why" or "FAIL NAME: why". */
static inline void report_result(const char *name, bool passed, const char *result)
{
    if (!passed)
        printf("FAIL %s: %s\n", name, why);
    else if (skipped)
        printf("skip %s: %s\n", name, why);
    else
        printf("ok %s: %s\n", name, result);
    fflush(stdout);
    failures += !passed;
    skipped = false;
}

/* errno's name, so that messages say EAGAIN rather than a translated sentence. */
static inline const char *errname(int err)
{
    const char *name = strerrorname_np(err);

    return err == 0 ? "0" : name != NULL ? name : "an unknown error";
}

#endif
