/*
 * Finding the real libc function behind each interposed name. The constructor resolves
 * them all, but another library's constructor may call a wrapper first, so each is also
 * resolved on first use. dlsym may allocate, and a malloc that called back into a wrapper
 * being resolved would recurse: that is caught and reported instead of overflowing.
 */
#include <dlfcn.h>
#include <stdlib.h>

#include "shim.h"

#define COOP_FN(family, name, version) void *coop_real_##name;
#include "surface.h"
#undef COOP_FN

/* A name of another library than libc (liburing's): no panic while it is not loaded. */
static const char optional_marker[] = "optional";
#define OPTIONAL optional_marker

static const struct {
    const char *name, *version;
    void **slot;
} reals[SHIM_FN_COUNT] = {
#define COOP_FN(family, name, version) { #name, version, &coop_real_##name },
#include "surface.h"
#undef COOP_FN
};

static __thread int resolving;

/* Unchecked by ASan (make test-asan): a wrapper called by another library's constructor
 * comes here first, maybe before the ASan runtime, preloaded behind coop, has set up the
 * shadow memory that checks read (a preloaded library's constructor runs after those of the
 * program's libraries that do not need it: libcap's calls prctl). The runtime starts at its
 * own constructor or at the first call of one of its interceptors: the real function found
 * here is one of those when ASan has it. */
__attribute__((no_sanitize("address"))) void *shim_resolve(enum shim_fn_index i)
{
    if (*reals[i].slot != NULL)
        return *reals[i].slot;
    if (resolving)
        coop_panic("%s was called while looking up %s", reals[i].name, reals[i].name);
    resolving = 1;
    bool optional = reals[i].version == OPTIONAL;
    void *fn = reals[i].version && !optional ? dlvsym(RTLD_NEXT, reals[i].name, reals[i].version)
                                             : dlsym(RTLD_NEXT, reals[i].name);
    resolving = 0;
    if (fn == NULL && optional)
        return NULL;
    if (fn == NULL)
        coop_panic("libc has no %s", reals[i].name);
    __atomic_store_n(reals[i].slot, fn, __ATOMIC_RELEASE);
    return fn;
}

void shim_resolve_all(void)
{
    for (int i = 0; i < SHIM_FN_COUNT; i++)
        shim_resolve((enum shim_fn_index)i);
}

/*
 * coop links a private copy of libuv whose references to interposed names were renamed
 * coop_uv_NAME at build time (see the Makefile): each lands here and jumps to the real
 * function, so the runtime's own event loop never re-enters a wrapper.
 */
#define COOP_FN(family, name, version)                                   \
    __asm__(".text\n"                                                    \
            ".globl coop_uv_" #name "\n"                                 \
            ".hidden coop_uv_" #name "\n"                                \
            ".type coop_uv_" #name ", @function\n"                       \
            "coop_uv_" #name ":\n"                                       \
            "\tjmp *coop_real_" #name "(%rip)\n"                         \
            ".size coop_uv_" #name ", .-coop_uv_" #name "\n");
#include "surface.h"
#undef COOP_FN

/* The libc data libuv's archive refers to (see the Makefile). coop never calls the libuv
 * functions that read environ (process spawning, proctitle), so it stays empty. */
#include <netinet/in.h>
#include <stdio.h>

__attribute__((visibility("hidden"))) const struct in6_addr coop_uv_in6addr_any = IN6ADDR_ANY_INIT;
__attribute__((visibility("hidden"))) char **coop_uv_environ;
__attribute__((visibility("hidden"))) FILE *coop_uv_stderr;

__attribute__((constructor(101))) static void point_libuv_at_stderr(void) { coop_uv_stderr = stderr; }
