/*
 * tls_modules [-n THREADS] [-s]: thread-local storage of every module, a line per variable:
 *
 *   ok NAME (MODULE): counts       every thread had the variable to itself, fresh from its image
 *   FAIL NAME (MODULE): counts     not
 *   FAIL WHO: what was wrong       the first few wrong things seen, per variable (on failure)
 *
 * and exits 1 when a check failed (2 when it could not run at all). THREADS threads (16) and
 * main use __thread variables of three modules: the executable; libtls_linked.so, linked at
 * start (static TLS); and libtls_loaded.so, which thread 0 loads with dlopen while all the
 * others are alive (dynamic TLS, through each thread's DTV). With -s, thread 0 also loads
 * libtls_loaded_static.so, whose initial-exec variable takes spare room of the static TLS
 * area, which dlopen fills with its image in every thread glibc knows of. The libraries are
 * the ones beside the executable.
 * Main writes values of its own first; then every thread, for every variable:
 *   - starts with the module's image (42, 0...), not main's value;
 *   - writes a value of its own and publishes the variable's address;
 *   - reads its own value back at the same address once every other thread wrote theirs;
 *   - reads every other thread's value through that thread's address;
 *   - finds its address different from every other thread's, and aligned as declared
 *     (linked_bss asks for 128 bytes, as liburcu's thread-locals do);
 *   - reaches the linked module's variables at the same address from the executable
 *     (initial-exec) and from the library (__tls_get_addr), the loaded module's from the
 *     library and through dlsym.
 * errno too: each thread sets its own, waits until all have, and reads its own back.
 * Nothing printed depends on addresses or timing: the lines are the same in every run.
 */
#define _GNU_SOURCE
#include "common.h"

#include <dlfcn.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>

enum { DEFAULT_THREADS = 16, MAX_THREADS = 1000, MAX_DETAILS = 3, SYMBOL_MAX = 64 };

__thread int executable_data = 42;
__thread int executable_bss;

/* libtls_linked.so's */
extern __thread int linked_data, linked_bss;
int *linked_data_address(void);
int *linked_bss_address(void);

static int *executable_data_address(void)
{
    return &executable_data;
}

static int *executable_bss_address(void)
{
    return &executable_bss;
}

enum variable {
    EXECUTABLE_DATA, EXECUTABLE_BSS, LINKED_DATA, LINKED_BSS, /* there at start */
    LOADED_DATA, LOADED_BSS,                                   /* loaded by thread 0 */
    LOADED_STATIC,                                             /* the same, with -s */
    ERRNO,
    VARIABLES
};

/* The end of the variables loaded by thread 0: LOADED_STATIC, or ERRNO with -s. */
static enum variable loaded_end = LOADED_STATIC;

struct variable_info {
    const char *name;
    const char *module;
    int image;                  /* a new thread's first value; errno's is not checked */
    int *(*address)(void);      /* the calling thread's instance (the loaded module's: once loaded) */
    const char *second_way;     /* another way to reach it, or NULL */
    int alignment;              /* declared larger than an int's, or 0 */
};

static struct variable_info variables[VARIABLES] = {
    [EXECUTABLE_DATA] = { "executable_data", "executable", 42, executable_data_address, NULL },
    [EXECUTABLE_BSS] = { "executable_bss", "executable", 0, executable_bss_address, NULL },
    [LINKED_DATA] = { "linked_data", "linked library, static TLS", 4242, linked_data_address,
                      "the executable's own access" },
    [LINKED_BSS] = { "linked_bss", "linked library, static TLS", 0, linked_bss_address,
                     "the executable's own access", 128 },
    [LOADED_DATA] = { "loaded_data", "dlopen'ed library, dynamic TLS", 4343, NULL, "dlsym" },
    [LOADED_BSS] = { "loaded_bss", "dlopen'ed library, dynamic TLS", 0, NULL, "dlsym" },
    [LOADED_STATIC] = { "loaded_static", "dlopen'ed library, initial-exec: static TLS", 4444, NULL, "dlsym" },
    [ERRNO] = { "errno", "libc", 0, __errno_location, NULL },
};

/* Counts of the checks passed, per variable. */
static struct {
    atomic_int image, own, through_others, distinct, second_way, aligned;
} passed[VARIABLES];

/* The libraries thread 0 loads: the first, or both with -s. */
static const char *const loaded_files[] = { "libtls_loaded.so", "libtls_loaded_static.so" };
static char loaded_paths[2][PATH_MAX];
static int libraries = 1;
static int threads = DEFAULT_THREADS;
static int main_index;          /* main is the last participant */
static int participants;
static int *addresses[MAX_THREADS + 1][VARIABLES];
static pthread_barrier_t everyone;

/* A participant's value of a variable: never any module's image. */
static int value_of(int p, enum variable v)
{
    return 1000 * (p + 1) + (int)v;
}

static void who(int p, char *name, size_t size)
{
    if (p == main_index)
        snprintf(name, size, "main");
    else
        snprintf(name, size, "thread %d", p);
}

/* One wrong thing participant p saw of variable v: printed at once, the first MAX_DETAILS
 * of each variable only. */
__attribute__((format(printf, 3, 4))) static void detail(int p, enum variable v, const char *fmt, ...)
{
    static atomic_int details[VARIABLES];
    char me[32], what[256];
    va_list ap;

    if (atomic_fetch_add(&details[v], 1) >= MAX_DETAILS)
        return;
    who(p, me, sizeof me);
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    printf("FAIL %s: %s\n", me, what);
    fflush(stdout);
}

static void wait_for_everyone(void)
{
    int err = pthread_barrier_wait(&everyone);

    if (err != 0 && err != PTHREAD_BARRIER_SERIAL_THREAD)
        die("pthread_barrier_wait: %s", strerror(err));
}

/* The variable reached the second way, for those that have one. */
static int *second_address(enum variable v)
{
    switch (v) {
    case LINKED_DATA: return &linked_data;
    case LINKED_BSS: return &linked_bss;
    case LOADED_DATA:
    case LOADED_BSS:
    case LOADED_STATIC: return dlsym(RTLD_DEFAULT, variables[v].name);
    default: return NULL;
    }
}

static void check_images(int p, enum variable first, enum variable end)
{
    char owner[32];

    for (enum variable v = first; v < end; v++) {
        int seen = *variables[v].address(), q = seen / 1000 - 1;

        if (seen == variables[v].image) {
            atomic_fetch_add(&passed[v].image, 1);
            continue;
        }
        *owner = '\0';
        if (q >= 0 && q < participants && seen == value_of(q, v))
            who(q, owner, sizeof owner);
        detail(p, v, "%s started as %d, not its image %d%s%s%s", variables[v].name, seen, variables[v].image,
               *owner ? " (" : "", owner, *owner ? "'s value)" : "");
    }
}

/* Writes p's values, publishes their addresses, and checks the second way to them. */
static void take_own(int p, enum variable first, enum variable end)
{
    for (enum variable v = first; v < end; v++) {
        int *at = variables[v].address(), *again;

        *at = value_of(p, v);
        addresses[p][v] = at;
        if (variables[v].alignment != 0) {
            if ((uintptr_t)at % (uintptr_t)variables[v].alignment == 0)
                atomic_fetch_add(&passed[v].aligned, 1);
            else
                detail(p, v, "%s is not aligned to %d bytes", variables[v].name, variables[v].alignment);
        }
        if (variables[v].second_way == NULL)
            continue;
        again = second_address(v);
        if (again == at)
            atomic_fetch_add(&passed[v].second_way, 1);
        else
            detail(p, v, "%s reached through %s is another variable than the library's", variables[v].name,
                   variables[v].second_way);
    }
}

static void check_own(int p, enum variable first, enum variable end)
{
    for (enum variable v = first; v < end; v++) {
        int *at = variables[v].address(), seen = *at;

        if (at == addresses[p][v] && seen == value_of(p, v))
            atomic_fetch_add(&passed[v].own, 1);
        else if (at != addresses[p][v])
            detail(p, v, "%s moved since the thread took its address", variables[v].name);
        else
            detail(p, v, "%s holds %d, not the %d the thread wrote", variables[v].name, seen, value_of(p, v));
    }
}

static void check_others(int p, enum variable first, enum variable end)
{
    char other[32];

    for (enum variable v = first; v < end; v++) {
        bool distinct = true;

        for (int q = 0; q < participants; q++) {
            if (q == p)
                continue;
            who(q, other, sizeof other);
            if (addresses[q][v] == addresses[p][v]) {
                distinct = false;
                detail(p, v, "%s is at the same address as %s's", variables[v].name, other);
            }
            int seen = *addresses[q][v];
            if (seen == value_of(q, v))
                atomic_fetch_add(&passed[v].through_others, 1);
            else
                detail(p, v, "%s of %s, read through its address, holds %d, not %d", variables[v].name, other,
                       seen, value_of(q, v));
        }
        if (distinct)
            atomic_fetch_add(&passed[v].distinct, 1);
    }
}

/* The path of a file in the executable's directory: a full path, since a dlopen that an
 * interposed library (ASan's) passes on searches that library's run path, not ours. */
static void beside_executable(char *path, size_t size, const char *file)
{
    char executable[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", executable, sizeof executable - 1);

    if (length < 0)
        die_errno("readlink /proc/self/exe");
    executable[length] = '\0';
    if ((size_t)snprintf(path, size, "%s/%s", dirname(executable), file) >= size)
        die("%s: the path is too long", file);
}

/* Into the global scope, where dlsym(RTLD_DEFAULT) finds their symbols. */
static void load_libraries(void)
{
    char symbol[SYMBOL_MAX];

    for (int i = 0; i < libraries; i++)
        if (dlopen(loaded_paths[i], RTLD_NOW | RTLD_GLOBAL) == NULL)
            die("dlopen: %s", dlerror());
    for (enum variable v = LOADED_DATA; v < loaded_end; v++) {
        snprintf(symbol, sizeof symbol, "%s_address", variables[v].name);
        variables[v].address = (int *(*)(void))dlsym(RTLD_DEFAULT, symbol);
        if (variables[v].address == NULL)
            die("dlsym %s: %s", symbol, dlerror());
    }
}

/* A thread finds the variables at their images, then takes values of its own (main took its
 * own before the threads could look). */
static void start_fresh(int p, enum variable first, enum variable end)
{
    if (p == main_index)
        return;
    check_images(p, first, end);
    take_own(p, first, end);
}

/* Once everyone has taken theirs: p's own values, and everyone else's through their addresses. */
static void read_back(int p, enum variable first, enum variable end)
{
    check_own(p, first, end);
    check_others(p, first, end);
}

/* What every participant does, main included. */
static void *participate(void *arg)
{
    int p = (int)(intptr_t)arg;

    start_fresh(p, EXECUTABLE_DATA, LOADED_DATA);
    /* errno: everyone sets theirs before anyone reads it back. */
    take_own(p, ERRNO, VARIABLES);
    wait_for_everyone();
    read_back(p, ERRNO, VARIABLES);
    wait_for_everyone();

    if (p == 0)
        load_libraries();
    wait_for_everyone();
    if (p == main_index)
        take_own(p, LOADED_DATA, loaded_end);
    wait_for_everyone();
    start_fresh(p, LOADED_DATA, loaded_end);
    wait_for_everyone();

    read_back(p, EXECUTABLE_DATA, loaded_end);
    /* No thread ends, taking its TLS along, while another may still read it. */
    wait_for_everyone();
    return NULL;
}

/* A variable's result line: "N of M what" for each kind of check, ok when every N is M. */
struct summary {
    char text[512];
    size_t length;
    bool ok;
};

static void add_count(struct summary *s, int n, int of, const char *what)
{
    int length = snprintf(s->text + s->length, sizeof s->text - s->length, "%s%d of %d %s",
                          s->length == 0 ? "" : "; ", n, of, what);

    if (length > 0)
        s->length += (size_t)length;
    if (s->length >= sizeof s->text)
        die("a result line is longer than %zu characters", sizeof s->text);
    s->ok &= n == of;
}

static bool report(void)
{
    char what[128];
    int pairs = participants * (participants - 1);
    bool all_ok = true;

    printf("ok dlopen: %s%s%s, loaded by thread 0 while %d other threads and main were alive\n",
           loaded_files[0], libraries > 1 ? " and " : "", libraries > 1 ? loaded_files[1] : "", threads - 1);
    for (enum variable v = 0; v < VARIABLES; v++) {
        struct summary s = { .length = 0, .ok = true };

        if (v >= loaded_end && v < ERRNO)
            continue;
        if (v != ERRNO) {
            snprintf(what, sizeof what, "threads started with its image %d", variables[v].image);
            add_count(&s, atomic_load(&passed[v].image), threads, what);
        }
        add_count(&s, atomic_load(&passed[v].own), participants,
                  "read their own value back once all had written theirs");
        add_count(&s, atomic_load(&passed[v].through_others), pairs,
                  "reads through another's address saw its value");
        add_count(&s, atomic_load(&passed[v].distinct), participants, "addresses distinct");
        if (variables[v].alignment != 0) {
            snprintf(what, sizeof what, "aligned to %d bytes", variables[v].alignment);
            add_count(&s, atomic_load(&passed[v].aligned), participants, what);
        }
        if (variables[v].second_way != NULL) {
            snprintf(what, sizeof what, "at the same address through %s", variables[v].second_way);
            add_count(&s, atomic_load(&passed[v].second_way), participants, what);
        }
        printf("%s %s (%s): %s\n", s.ok ? "ok" : "FAIL", variables[v].name, variables[v].module, s.text);
        all_ok &= s.ok;
    }
    return all_ok;
}

int main(int argc, char **argv)
{
    pthread_t tids[MAX_THREADS];
    int c, err;

    while ((c = getopt(argc, argv, "n:s")) != -1) {
        switch (c) {
        case 'n': threads = (int)parse_long(optarg, 1, MAX_THREADS, "-n"); break;
        case 's': libraries = 2, loaded_end = ERRNO; break;
        default: die("usage: tls_modules [-n THREADS] [-s]");
        }
    }
    if (optind != argc)
        die("usage: tls_modules [-n THREADS] [-s]");
    for (int i = 0; i < libraries; i++) {
        beside_executable(loaded_paths[i], sizeof loaded_paths[i], loaded_files[i]);
        if (dlopen(loaded_paths[i], RTLD_NOW | RTLD_NOLOAD) != NULL)
            die("%s is loaded at start: it must come with dlopen, later", loaded_files[i]);
    }
    main_index = threads;
    participants = threads + 1;
    if ((err = pthread_barrier_init(&everyone, NULL, (unsigned)participants)) != 0)
        die("pthread_barrier_init: %s", strerror(err));

    /* Main's values first: a new thread must not start with them. */
    take_own(main_index, EXECUTABLE_DATA, LOADED_DATA);
    for (int i = 0; i < threads; i++)
        if ((err = pthread_create(&tids[i], NULL, participate, (void *)(intptr_t)i)) != 0)
            die("pthread_create: %s", strerror(err));
    participate((void *)(intptr_t)main_index);
    for (int i = 0; i < threads; i++)
        if ((err = pthread_join(tids[i], NULL)) != 0)
            die("pthread_join: %s", strerror(err));
    return report() ? 0 : 1;
}
