/*
 * libFuzzer target: the COOP_* settings parser (shim/settings.c). The input is split at
 * newlines into the values of the variables below, in order; an empty line leaves that
 * variable unset. Every input must either parse into values in range or give one line
 * naming a variable.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../shim/shim.h"

static const char *const names[] = {
    "COOP_PATCH", "COOP_STACK_SIZE", "COOP_LOG", "COOP_SWITCH", "COOP_STATS", "COOP_VERBOSE",
    "COOP_DUMP_SIGNAL", "COOP_MAX_BLOCKING_MS", "COOP_ON_DEADLOCK", "COOP_THREADPOOL_SIZE",
    "COOP_FILE_OFFLOAD", "COOP_NO_INHERIT", "COOP_TLS", "COOP_ALWAYS_COOPERATIVE", "COOP_PREEMPT_MS",
    "COOP_HUBS", "COOP_HANDOFF_MS", "COOP_MAX_SPARES",
};
#define COUNT (sizeof names / sizeof names[0])
static const char *values[COUNT];

static const char *get(const char *name)
{
    for (size_t i = 0; i < COUNT; i++)
        if (strcmp(name, names[i]) == 0)
            return values[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *line = text;
    for (size_t i = 0; i < COUNT; i++) {
        char *end = line != NULL ? strchr(line, '\n') : NULL;
        if (end != NULL)
            *end = '\0';
        values[i] = line != NULL && *line != '\0' ? line : NULL;
        line = end != NULL ? end + 1 : NULL;
    }
    struct shim_settings s;
    memset(&s, 0, sizeof s);
    char error[512];
    if (shim_parse_settings(get, &s, error, sizeof error) != 0) {
        assert(strncmp(error, "coop: COOP_", 11) == 0);
        assert(strchr(error, '\n') == NULL);
    } else {
        assert(s.core.stack_size >= 16 * 1024 && s.core.stack_size <= (1u << 30));
        assert(s.threadpool_size >= 1 && s.threadpool_size <= 1024);
        assert(s.dump_signal >= 0 && s.dump_signal < 65);
        assert(s.log_level <= COOP_LOG_DEBUG);
        assert(s.core.preempt_ms >= 0 && s.core.preempt_ms <= 3600000);
        assert(s.core.max_blocking_ms >= 0 && s.core.max_blocking_ms <= 3600000);
        assert(s.core.hubs >= 0 && s.core.hubs <= 96);      /* 0: auto, one per CPU */
    }
    free(text);
    return 0;
}
