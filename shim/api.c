/* The small public API: for programs and tests that want to know whether coop runs them. */
#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT const char *coop_version(void) { return "0.1.0"; }

/* 1 when the caller is a greenlet that coop can park, else 0. */
EXPORT int coop_active(void) { return coop_self() != NULL; }
