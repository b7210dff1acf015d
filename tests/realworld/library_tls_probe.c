/*
 * library_tls_probe: does every thread have a shared library's thread-locals to itself?
 * test_ruby.sh and test_jvm.sh ask this of coop, through lib.sh's library_tls_per_greenlet,
 * because it decides whether their runs under coop must pass: libruby keeps the running
 * thread's execution context in a __thread of its own (a library linked at start: static
 * TLS), and libjvm keeps the current Thread in one (a library the launcher loads with dlopen:
 * dynamic TLS). Both are reached through __tls_get_addr and the thread's DTV.
 *
 * Built with -DPROBE_LIBRARY this file is the library: one static __thread variable and a
 * function giving its address. Otherwise it is the program:
 *
 *     library_tls_probe LOADED_LIBRARY
 *
 * linked at start with the library, it also loads LOADED_LIBRARY (a copy of the library
 * under another name, so a second module) with dlopen. THREADS threads each write their
 * number into both modules' variables, sleep (under coop the others run meanwhile) and read
 * them back. Prints "linked: N of 8 threads lost their value, loaded: N of 8" and exits 0
 * when none did, 1 when some did, 2 when the library cannot be loaded.
 */
#ifdef PROBE_LIBRARY
static __thread long probe_value;
long *probe_slot(void) { return &probe_value; }
#else
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define THREADS 8

long *probe_slot(void);
static long *(*loaded_slot)(void);

struct lost { int linked, loaded; };

static void *probe(void *arg)
{
    long number = (long)arg + 1;
    struct lost *lost = calloc(1, sizeof *lost);
    *probe_slot() = number;
    *loaded_slot() = number;
    usleep(10000);
    lost->linked = *probe_slot() != number;
    lost->loaded = *loaded_slot() != number;
    return lost;
}

int main(int argc, char **argv)
{
    void *library = argc == 2 ? dlopen(argv[1], RTLD_NOW | RTLD_LOCAL) : NULL;
    if (library == NULL || (loaded_slot = (long *(*)(void))dlsym(library, "probe_slot")) == NULL) {
        fprintf(stderr, "usage: library_tls_probe LOADED_LIBRARY (%s)\n", dlerror());
        return 2;
    }
    pthread_t threads[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, probe, (void *)i);
    struct lost total = { 0, 0 };
    for (int i = 0; i < THREADS; i++) {
        struct lost *lost;
        pthread_join(threads[i], (void **)&lost);
        total.linked += lost->linked;
        total.loaded += lost->loaded;
        free(lost);
    }
    printf("linked: %d of %d threads lost their value, loaded: %d of %d\n", total.linked, THREADS,
           total.loaded, THREADS);
    return total.linked + total.loaded > 0;
}
#endif
