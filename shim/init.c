/* Start-up: read the settings, resolve libc, turn the main thread into a hub. */
#include <pthread.h>

#include "shim.h"

__attribute__((constructor)) static void coop_start(void)
{
    shim_resolve_all();
    struct coop_settings settings = {
        .os_thread_self = (uintptr_t(*)(void))REAL(pthread_self),
        .os_thread_create = REAL(pthread_create),
        .os_sigaction = REAL(sigaction),
    };
    shim_read_settings(&settings);

    coop_init(&settings);
    shim_signal_init();
    shim_thread_init();

    shim_locals_init();
}

struct coop_greenlet *shim_cooperative(enum shim_family family)
{
    if (!shim_patched[family])
        return NULL;
    struct coop_greenlet *g = coop_self();
    return g != NULL && !coop_alone() ? g : NULL;
}
