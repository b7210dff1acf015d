/*
 * Thread-local storage: every greenlet has the TLS a new thread would have.
 *
 * On x86-64 a thread's thread-local variables hang off its thread pointer (the %fs base).
 * glibc puts three things there, and a greenlet gets its own of each, made the way
 * pthread_create makes a thread's:
 *
 *   - the static TLS blocks of the executable and of every library loaded at start, just
 *     below the thread pointer, at offsets fixed for the life of the process (errno,
 *     malloc's tcache pointer, the locale and the resolver state are glibc's own);
 *   - the thread control block at the thread pointer: glibc's struct pthread, starting
 *     with tcbhead_t (tcb, dtv, self, ..., stack_guard at %fs:0x28, pointer_guard at 0x30);
 *   - the DTV, through which __tls_get_addr finds the blocks of libraries loaded later with
 *     dlopen (dynamic TLS), allocated on first use per DTV.
 *
 * ld.so exports what pthread_create itself uses: _dl_get_tls_static_info (the area's size
 * and alignment), _dl_allocate_tls (a DTV for an area, every module's block filled from its
 * initial image) and _dl_deallocate_tls (the DTV and the dynamic blocks); libc exports
 * __ctype_init, which a new thread runs before its start routine. libc exports the
 * layout of struct pthread for libthread_db (_thread_db_*). These are GLIBC_PRIVATE, not a
 * stable ABI: coop_tls_init checks each, and what it derives, before the first greenlet
 * exists, and refuses to start on a glibc they do not fit rather than corrupt memory.
 *
 * The area sits at the top of the greenlet's stack (below its record, when the record is
 * there), as glibc puts struct pthread and the static TLS at the top of a thread's stack;
 * the thread's stack size counts it, as glibc's does. The fields of the control block, and whose view each takes:
 *
 *   the greenlet's own      tcb and self (its thread pointer), dtv, cancellation and cleanup
 *                           state (zero), the robust-mutex list and its link in glibc's
 *                           list of threads (both empty: glibc does not know it), everything else
 *                           glibc keeps per thread (zero, as in a new thread);
 *   the process's           stack_guard, pointer_guard, CET feature_1, sysinfo:
 *                           copied from the creating thread; multiple_threads: 1 once
 *                           more than one OS thread runs program code (several hubs, or a
 *                           spare during a handoff), since malloc and stdio skip their
 *                           locks when it reads 0 (coop_tls_set_multithreaded);
 *   the kernel's            tid: the OS thread that runs the greenlet (glibc passes it to
 *                           system calls such as tgkill), rewritten by coop_tls_enter
 *                           whenever the greenlet is resumed by another hub than the last
 *                           (but while it holds the loader's lock: loader.c);
 *                           the rseq area: the kernel updates only the OS thread's, so the
 *                           greenlet's says "not registered" and sched_getcpu asks the
 *                           kernel.
 *
 * A switch moves the thread pointer when it changes: with the wrfsbase instruction where the
 * CPU and kernel allow it (FSGSBASE, Linux 5.9+), else with arch_prctl(ARCH_SET_FS), a system
 * call. COOP_TLS picks one (auto: wrfsbase where available).
 *
 * Two contexts keep an area they did not get from here. The main greenlet runs on the
 * initial thread's own (glibc's record of the main thread, which the program may have
 * stored: pthread_self must not change), and, like every greenlet, on any hub: so hub 0,
 * which the main thread's OS thread also runs, has an area of its own, and the OS thread
 * 0's rseq registration is dropped (drop_rseq). The main greenlet's tid stays the OS
 * thread 0's wherever it runs: glibc's setuid broadcast finds that thread by it. In a
 * forked child the forking greenlet's record takes that part (coop_tls_fork_child). A hub of
 * the runtime's own threads runs on its thread's control block, which no greenlet uses.
 *
 * malloc's per-thread state (its tcache and arena pointers, in libc's block) is freed by
 * glibc's thread-exit code, which coop cannot call. Instead a finished greenlet's state is
 * handed to the next greenlet created, as glibc hands a finished thread's stack to the next
 * thread: the words to carry are found at start-up by watching which words of a fresh area's
 * libc block a malloc and a free change.
 *
 * Not covered: a library dlopen'ed later that uses static TLS (the initial-exec model) is
 * initialised by glibc in the threads it knows; in a greenlet created before that dlopen its
 * block reads zero rather than its initial image.
 */
#include <asm/prctl.h>
#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/rseq.h>

#include "internal.h"
#include "sanitizer.h"

#define HWCAP2_FSGSBASE (1 << 1)

/* tcbhead_t, x86-64 (glibc's sysdeps/x86_64/nptl/tls.h). */
#define TCB_TCB 0x00
#define TCB_SELF 0x10
#define TCB_MULTIPLE_THREADS 0x18
#define TCB_GSCOPE_FLAG 0x1c
#define TCB_POINTER_GUARD 0x30
#define TCB_PRIVATE_TM 0x50          /* libitm's and split-stack words, to 0x78: per thread */
#define TCB_PRIVATE_END 0x78
#define TCB_HEADER_COPIED 0x80       /* the header glibc copies into a new thread, and more */

#define MALLOC_WORDS_MAX 4

static struct {
    void *(*allocate)(void *tcb);
    void (*ctype_init)(void);
    void (*deallocate)(void *tcb, bool dealloc_tcb);
    size_t area_size, align, tcb_size;
    uintptr_t tid_at, list_at, robust_at;    /* offsets in struct pthread */
    uintptr_t cancel_at, unwind_at;          /* cancelhandling, cleanup_jmp_buf */
    bool fsgsbase;
    _Atomic bool multithreaded;      /* coop_tls_set_multithreaded was called */
    int malloc_words;                 /* words of libc's block that hold malloc's state */
    intptr_t malloc_word_at[MALLOC_WORDS_MAX];   /* their offsets from the thread pointer */
} tls;

/* Offsets from the thread pointer of the runtime's own thread-locals, seeded into each
 * greenlet's area: static TLS offsets are the same for every thread. */
static intptr_t running_at, thread_state_at;

/* Finished greenlets' malloc states, for the next greenlets. */
struct malloc_state { uintptr_t word[MALLOC_WORDS_MAX]; };
static coop_lock_t spare_lock;
static struct malloc_state *spare;
static size_t spare_len, spare_cap;

static uintptr_t thread_pointer(void)
{
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

static void set_thread_pointer(uintptr_t tp)
{
    if (tls.fsgsbase)
        __asm__ volatile("wrfsbase %0" : : "r"(tp) : "memory");
    else
        coop_sys(SYS_arch_prctl, ARCH_SET_FS, (long)tp, 0);
}

static uintptr_t *word_at(uintptr_t tp, intptr_t offset) { return (uintptr_t *)(tp + offset); }

static void refuse(const char *why)
{
    char line[256];
    int n = snprintf(line, sizeof line, "coop: glibc %s does not fit coop's thread-local storage: %s\n",
                     gnu_get_libc_version(), why);
    coop_write_stderr(line, (size_t)n);
    _exit(2);
}

/* A GLIBC_PRIVATE symbol of libc or ld.so, or a clear refusal. */
static void *private_symbol(const char *name)
{
    void *p = dlvsym(RTLD_DEFAULT, name, "GLIBC_PRIVATE");
    if (p == NULL) {
        char why[96];
        snprintf(why, sizeof why, "%s is missing", name);
        refuse(why);
    }
    return p;
}

/* Offset of a struct pthread field from libthread_db's descriptor {bits, count, offset}. */
static uintptr_t pthread_field(const char *descriptor, uint32_t bits)
{
    const uint32_t *d = private_symbol(descriptor);
    if (d[0] != bits || d[2] + bits / 8 > tls.tcb_size)
        refuse(descriptor);
    return d[2];
}

/* Makes the control block of an area whose static blocks ld.so has just filled: see the
 * table at the top. */
static void init_control_block(uintptr_t tp, pid_t tid)
{
    uintptr_t os_tp = thread_pointer();
    memcpy((void *)tp, (void *)os_tp, TCB_HEADER_COPIED);
    *word_at(tp, TCB_TCB) = tp;
    *word_at(tp, TCB_SELF) = tp;
    *(int *)(tp + TCB_MULTIPLE_THREADS) = atomic_load_explicit(&tls.multithreaded, memory_order_relaxed);
    *(int *)(tp + TCB_GSCOPE_FLAG) = 0;
    memset((void *)(tp + TCB_PRIVATE_TM), 0, TCB_PRIVATE_END - TCB_PRIVATE_TM);
    *(pid_t *)(tp + tls.tid_at) = tid;
    /* glibc's list of threads: this one is on none, but a forked child unlinks itself. */
    uintptr_t *list = word_at(tp, (intptr_t)tls.list_at);
    list[0] = list[1] = (uintptr_t)list;
    struct robust_list_head *robust = (struct robust_list_head *)(tp + tls.robust_at);
    robust->list.next = &robust->list;
    robust->futex_offset = ((struct robust_list_head *)(os_tp + tls.robust_at))->futex_offset;
    robust->list_op_pending = NULL;
    if (__rseq_size > 0)
        ((struct rseq *)(tp + (uintptr_t)__rseq_offset))->cpu_id = RSEQ_CPU_ID_REGISTRATION_FAILED;
}

/* The main greenlet runs on the initial thread's control block wherever it is resumed, and
 * the kernel would go on updating that block's rseq area for the OS thread 0 alone (a
 * sched_getcpu there would name another CPU than the one it runs on; a library's rseq
 * critical section would not be aborted when its real thread is preempted). It says "not
 * registered", as every greenlet's area does, and glibc asks the kernel. */
static void drop_rseq(uintptr_t tp)
{
    if (__rseq_size == 0)
        return;
    struct rseq *area = (struct rseq *)(tp + (uintptr_t)__rseq_offset);
    if (area->cpu_id == (uint32_t)RSEQ_CPU_ID_REGISTRATION_FAILED)
        return;
    /* Unregistering takes the length it was registered with: glibc's area size, 32 before
     * glibc 2.40's feature size. */
    if (coop_sys6(SYS_rseq, (long)area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG, 0, 0) != 0
        && coop_sys6(SYS_rseq, (long)area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG, 0, 0) != 0) {
        coop_warn("cannot unregister the main thread's rseq area: sched_getcpu in the main thread "
                  "may name another CPU than its own");
        return;
    }
    area->cpu_id = RSEQ_CPU_ID_REGISTRATION_FAILED;
}

/* Fills the area below tp (and its control block) as ld.so fills a new thread's, seeds
 * the runtime's own thread-locals; 0, or -1 out of memory. */
static int init_area(uintptr_t tp, pid_t tid, struct coop_greenlet *g)
{
    memset((void *)tp, 0, tls.tcb_size);      /* a pooled stack holds an old one */
    init_control_block(tp, tid);
    if (tls.allocate((void *)tp) == NULL)     /* installs the DTV: after the header copy */
        return -1;
    *(struct coop_greenlet **)(tp + running_at) = g;
    memcpy((void *)(tp + thread_state_at), &coop_thread, sizeof coop_thread);
    coop_san_inherit_tls(tp, thread_pointer());
    return 0;
}

static void take_spare_malloc_state(uintptr_t tp)
{
    if (tls.malloc_words == 0 || spare_len == 0)
        return;
    coop_lock(&spare_lock);
    if (spare_len > 0) {
        struct malloc_state *s = &spare[--spare_len];
        for (int i = 0; i < tls.malloc_words; i++)
            *word_at(tp, tls.malloc_word_at[i]) = s->word[i];
    }
    coop_unlock(&spare_lock);
}

static void keep_malloc_state(uintptr_t tp)
{
    struct malloc_state s = { { 0 } };
    bool used = false;
    for (int i = 0; i < tls.malloc_words; i++)
        used |= (s.word[i] = *word_at(tp, tls.malloc_word_at[i])) != 0;
    if (!used)
        return;
    coop_lock(&spare_lock);
    if (spare_len == spare_cap) {
        size_t cap = spare_cap ? spare_cap * 2 : 64;
        struct malloc_state *grown = realloc(spare, cap * sizeof *grown);
        if (grown == NULL) {      /* the state is lost: a small leak, never a crash */
            coop_unlock(&spare_lock);
            return;
        }
        spare = grown;
        spare_cap = cap;
    }
    spare[spare_len++] = s;
    coop_unlock(&spare_lock);
}

static int find_libc_block(struct dl_phdr_info *info, size_t size, void *out)
{
    (void)size;
    if (strstr(info->dlpi_name, "/libc.so.") == NULL)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            ((uintptr_t *)out)[0] = (uintptr_t)info->dlpi_tls_data;
            ((uintptr_t *)out)[1] = info->dlpi_phdr[i].p_memsz;
        }
    return 1;
}

/* Runs glibc's malloc and free on a fresh area, on this OS thread; nothing in between may
 * touch a thread-local of the caller's. */
static __attribute__((noinline)) void *malloc_on(uintptr_t tp, void *(*libc_malloc)(size_t),
                                                 void (*libc_free)(void *), int **errno_at)
{
    uintptr_t own = thread_pointer();
    set_thread_pointer(tp);
    void *p = libc_malloc(64);
    libc_free(p);
    *errno_at = __errno_location();
    set_thread_pointer(own);
    return p;
}

/*
 * A fresh area on the heap, made as a greenlet's would be, checked: glibc's errno must land
 * inside it; then the words of libc's block that a malloc and a free change there are
 * malloc's per-thread state. The probe's own state becomes the first spare.
 */
static void probe_area(void)
{
    uintptr_t libc_block[2] = { 0, 0 };
    dl_iterate_phdr(find_libc_block, libc_block);
    if (libc_block[0] == 0)
        refuse("libc's TLS block was not found");
    uintptr_t own = thread_pointer();
    intptr_t libc_at = (intptr_t)(libc_block[0] - own);
    size_t libc_words = libc_block[1] / sizeof(uintptr_t);

    size_t blocks = tls.area_size - tls.tcb_size;   /* a multiple of the alignment; the whole may not be */
    char *mem = aligned_alloc(tls.align, blocks + (tls.tcb_size + tls.align - 1) / tls.align * tls.align);
    if (mem == NULL)
        coop_panic("out of memory");
    uintptr_t tp = (uintptr_t)mem + blocks;
    if (init_area(tp, (pid_t)coop_sys(SYS_gettid, 0, 0, 0), NULL) != 0)
        coop_panic("out of memory");
    if (*word_at(tp, TCB_SELF) != tp)
        refuse("the control block was not laid out as expected");
    uintptr_t before[32];
    if (libc_words > 32)
        refuse("libc's TLS block is larger than expected");
    memcpy(before, (void *)(tp + libc_at), libc_words * sizeof(uintptr_t));

    int *errno_at;
    malloc_on(tp, dlsym(RTLD_DEFAULT, "__libc_malloc"), dlsym(RTLD_DEFAULT, "__libc_free"), &errno_at);
    if ((uintptr_t)errno_at < (uintptr_t)mem || (uintptr_t)errno_at >= tp)
        refuse("errno of a new area is not in that area");
    for (size_t i = 0; i < libc_words; i++)
        if (before[i] != word_at(tp, libc_at)[i] && tls.malloc_words < MALLOC_WORDS_MAX)
            tls.malloc_word_at[tls.malloc_words++] = libc_at + (intptr_t)(i * sizeof(uintptr_t));
    coop_debug("tls: area %zu bytes, control block %zu, malloc state in %d words of libc's block, %s",
               tls.area_size, tls.tcb_size, tls.malloc_words, tls.fsgsbase ? "wrfsbase" : "arch_prctl");
    keep_malloc_state(tp);
    tls.deallocate((void *)tp, false);
    free(mem);
}

/*
 * Where glibc keeps a thread's cancellation state: libthread_db names the cancelhandling
 * word, whose state and type bits are checked against glibc's own setters on this thread;
 * cleanup_jmp_buf, the head of its chain of cancellation buffers, comes just before it
 * (checked by registering a buffer as pthread_cleanup_push does).
 */
static void probe_cancellation(void)
{
    uintptr_t own = thread_pointer();
    tls.cancel_at = pthread_field("_thread_db_pthread_cancelhandling", 32);
    _Atomic int *state = (_Atomic int *)(own + tls.cancel_at);
    int before = atomic_load(state), old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    int disabled = atomic_load(state);
    pthread_setcancelstate(old, NULL);
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &old);
    int async = atomic_load(state);
    pthread_setcanceltype(old, NULL);
    if ((disabled ^ before) != COOP_CANCEL_DISABLED || (async ^ before) != COOP_CANCEL_ASYNC)
        refuse("the cancellation state is not laid out as expected");

    tls.unwind_at = tls.cancel_at - sizeof(void *);
    void **chain = (void **)(own + tls.unwind_at), *was = *chain;
    __pthread_unwind_buf_t probe;
    __pthread_register_cancel(&probe);
    bool found = *chain == &probe;
    __pthread_unregister_cancel(&probe);
    if (!found || *chain != was)
        refuse("the chain of cancellation buffers is not where expected");
}

void coop_tls_init(enum coop_tls_mode mode)
{
    bool fsgsbase = getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE;
    if (mode == COOP_TLS_FSGSBASE && !fsgsbase) {
        static const char line[] = "coop: COOP_TLS=fsgsbase: this CPU or kernel does not let user code "
                                   "set the thread pointer (no FSGSBASE in AT_HWCAP2); use auto or syscall\n";
        coop_write_stderr(line, sizeof line - 1);
        _exit(2);
    }
    tls.fsgsbase = mode == COOP_TLS_FSGSBASE || (mode == COOP_TLS_AUTO && fsgsbase);

    void (*static_info)(size_t *, size_t *) = private_symbol("_dl_get_tls_static_info");
    tls.allocate = private_symbol("_dl_allocate_tls");
    tls.deallocate = private_symbol("_dl_deallocate_tls");
    tls.ctype_init = private_symbol("__ctype_init");
    tls.tcb_size = *(const uint32_t *)private_symbol("_thread_db_sizeof_pthread");
    static_info(&tls.area_size, &tls.align);
    /* The blocks lie below the thread pointer, which is aligned; glibc adds struct pthread to
     * their aligned size, so the whole need not be a multiple of the alignment (liburcu's
     * thread-locals ask for 128-byte alignment; struct pthread is 2368 bytes in glibc 2.36). */
    if (tls.tcb_size < 1024 || tls.tcb_size % 64 != 0 || tls.area_size <= tls.tcb_size
        || (tls.area_size - tls.tcb_size) % tls.align != 0 || tls.align < 16 || tls.align > 4096)
        refuse("the static TLS area or struct pthread has an unexpected size");
    tls.tid_at = pthread_field("_thread_db_pthread_tid", 32);
    tls.list_at = pthread_field("_thread_db_pthread_list", 128);
    probe_cancellation();

    /* The kernel knows where the OS thread's robust list head is: inside its struct pthread. */
    uintptr_t own = thread_pointer(), head = 0;
    size_t len;
    if (coop_sys(SYS_get_robust_list, 0, (long)&head, (long)&len) != 0 || head < own
        || head + sizeof(struct robust_list_head) > own + tls.tcb_size)
        refuse("the robust-mutex list head is not in struct pthread");
    tls.robust_at = head - own;

    running_at = (intptr_t)((uintptr_t)&coop_running - own);
    thread_state_at = (intptr_t)((uintptr_t)&coop_thread - own);
    probe_area();
}

void coop_tls_hub_init(struct coop_hub *h) { h->os_tp = thread_pointer(); }

_Atomic int *coop_greenlet_cancel_state(const struct coop_greenlet *g)
{
    return (_Atomic int *)(g->tp + tls.cancel_at);
}


void **coop_greenlet_unwind_chain(const struct coop_greenlet *g) { return (void **)(g->tp + tls.unwind_at); }

uintptr_t coop_tls_pointer_guard(void) { return *word_at(thread_pointer(), TCB_POINTER_GUARD); }

uintptr_t coop_tls_place(char *top)
{
    return ((uintptr_t)top - tls.tcb_size) & ~(uintptr_t)(tls.align - 1);
}

char *coop_tls_area_bottom(uintptr_t tp) { return (char *)(tp - (tls.area_size - tls.tcb_size)); }

size_t coop_tls_area_space(void) { return tls.area_size + tls.align; }

int coop_tls_greenlet_init(struct coop_greenlet *g)
{
    if (g->tp == 0) {             /* the OS thread's own context: not placed */
        g->tp = g->hub->os_tp;
        if (g->is_main)
            drop_rseq(g->tp);
        return 0;
    }
    if (init_area(g->tp, g->hub->tid, g->is_hub ? NULL : g) != 0)
        return -1;
    /* As glibc's pthread_create marks the new thread and its creator: its syscall wrappers
     * then act on cancellation, and malloc's paths that read the flag take their atomic
     * ways. The hub's thread (its main greenlet's) too. Hub 0's own area, made at start-up,
     * leaves the main thread's alone (a program that never creates a thread stays single-
     * threaded for glibc); its loop runs only once there are greenlets, beside the runtime's
     * threads. */
    if (!g->is_hub) {
        *(int *)(thread_pointer() + TCB_MULTIPLE_THREADS) = 1;
        *(int *)(g->hub->os_tp + TCB_MULTIPLE_THREADS) = 1;
    }
    *(int *)(g->tp + TCB_MULTIPLE_THREADS) = 1;
    g->tid_written = g->hub->tid;
    take_spare_malloc_state(g->tp);
    g->own_tls = true;
    return 0;
}

/* What glibc's start_thread does for a new thread's TLS before its start routine: the ctype
 * tables' pointers (isspace, toupper...) start as zeros in libc's image. */
void coop_tls_start(struct coop_greenlet *g)
{
    if (g->own_tls)
        tls.ctype_init();
}

void coop_tls_greenlet_free(struct coop_greenlet *g)
{
    if (!g->own_tls)
        return;
    keep_malloc_state(g->tp);
    tls.deallocate((void *)g->tp, false);
    g->own_tls = false;
}

/* A walk of a greenlet's robust mutexes (each_robust): the owner's tid, the new one for a
 * move, and for an end the greenlet's stack proper, whose frames are gone. */
struct robust_walk {
    pid_t tid, to;
    uintptr_t dead_lo, dead_hi;
};

/* Whether a robust mutex's word names tid as its owner. A priority-inheritance one counts
 * only while nobody waits: the kernel then keeps a record of its owning task too, which
 * coop cannot move or end. */
static bool held_by(uint32_t word, bool pi, pid_t tid)
{
    return pi ? word == (uint32_t)tid : (word & FUTEX_TID_MASK) == (uint32_t)tid;
}

/* The owner's tid in a robust mutex's word moves from one OS thread's to another's, its
 * FUTEX_WAITERS and FUTEX_OWNER_DIED bits kept. */
static void move_owner(_Atomic uint32_t *word, bool pi, const struct robust_walk *walk)
{
    uint32_t seen = atomic_load(word);
    do {
        if (!held_by(seen, pi, walk->tid))
            return;
    } while (!atomic_compare_exchange_weak(word, &seen, (seen & ~FUTEX_TID_MASK) | (uint32_t)walk->to));
    pthread_mutex_t *m = (pthread_mutex_t *)((char *)word - offsetof(pthread_mutex_t, __data.__lock));
    if (m->__data.__owner == walk->tid)
        m->__data.__owner = walk->to;
}

/* What the kernel does to the robust mutexes of a thread that exits (handle_futex_death):
 * one it still holds loses its owner and says FUTEX_OWNER_DIED, and a waiter is woken
 * (with a shared wake, as glibc waits on every robust mutex), whose lock then answers
 * EOWNERDEAD; so are the greenlets parked for it by the shim (those of the same OS thread,
 * which glibc would take for its owner). A priority-inheritance one that others wait for is
 * the kernel's. */
static void mark_owner_died(_Atomic uint32_t *word, bool pi, const struct robust_walk *walk)
{
    uint32_t seen = atomic_load(word);
    if (pi && seen == ((uint32_t)walk->tid | FUTEX_WAITERS)) {
        static _Atomic bool warned;
        if (!atomic_exchange(&warned, true))
            coop_warn("a thread ended holding a robust priority-inheritance mutex that others wait for: "
                      "they go on waiting (the kernel's record of its owner is the OS thread's); said once");
        return;
    }
    do {
        if (!held_by(seen, pi, walk->tid))
            return;
    } while (!atomic_compare_exchange_weak(word, &seen, (seen & FUTEX_WAITERS) | FUTEX_OWNER_DIED));
    if (seen & FUTEX_WAITERS)
        coop_sys(SYS_futex, (long)word, FUTEX_WAKE, 1);
    coop_unpark(word, INT_MAX, ~0u);
}

/* Calls fn on the lock word of each robust mutex a greenlet holds: those on the list in its
 * control block, each link tagged in bit 0 when it is a priority-inheritance one; up to one
 * in the walk's dead range (a mutex the program left locked in a frame that is gone: its
 * link may have been overwritten since). Not the one a signal handler's wait may have found
 * it taking or letting go (list_op_pending): held or not, that word may name another
 * greenlet of the same OS thread. Other threads may set bits in those words meanwhile (a
 * waiter's FUTEX_WAITERS): fn uses a CAS. The kernel's limit on the list's length bounds a
 * corrupt one. */
static void each_robust(uintptr_t tp, void (*fn)(_Atomic uint32_t *word, bool pi, const struct robust_walk *walk),
                        const struct robust_walk *walk)
{
    struct robust_list_head *head = (struct robust_list_head *)(tp + tls.robust_at);
    uintptr_t link = (uintptr_t)head->list.next;
    for (int n = 0; link != (uintptr_t)&head->list && link != 0 && n < ROBUST_LIST_LIMIT; n++) {
        uintptr_t entry = link & ~1ul;
        if (entry >= walk->dead_lo && entry < walk->dead_hi)
            return;
        fn((_Atomic uint32_t *)(entry + (uintptr_t)head->futex_offset), link & 1, walk);
        link = (uintptr_t)((struct robust_list *)entry)->next;
    }
}

/* glibc names the owner of a robust mutex by its thread's tid, and refuses an unlock by a
 * thread of another tid; the kernel marks those of a thread that exits, walking the list it
 * was told of (set_robust_list), the OS thread's. A greenlet's tid follows its OS thread,
 * and so do the words of the robust mutexes it holds; when it ends, they are marked as the
 * kernel would, and its list is emptied (the main greenlet's is the one the kernel knows for
 * the OS thread 0). The last greenlet's end is the process's: atexit handlers run first,
 * with its mutexes still its own, and its list becomes its OS thread's for the kernel. */
void coop_tls_robust_exit(struct coop_greenlet *g, bool process_exits)
{
    struct robust_list_head *head = (struct robust_list_head *)(g->tp + tls.robust_at);
    if (process_exits) {
        coop_sys(SYS_set_robust_list, (long)head, sizeof *head, 0);
        return;
    }
    struct robust_walk walk = { .tid = coop_tls_tid(g) };
    if (g->own_tls) {
        walk.dead_lo = (uintptr_t)g->stack.base;
        walk.dead_hi = (uintptr_t)coop_tls_area_bottom(g->tp);
    }
    each_robust(g->tp, mark_owner_died, &walk);
    head->list.next = &head->list;
    head->list_op_pending = NULL;
}

void coop_tls_prefetch(const struct coop_greenlet *g)
{
    __builtin_prefetch((const void *)g->tp, 1);                      /* the control block */
    __builtin_prefetch((const void *)(g->tp + thread_state_at), 1);  /* coop_thread */
}

void coop_tls_enter(struct coop_greenlet *from, struct coop_greenlet *to, struct coop_hub *h)
{
    if (!to->is_hub) {
        /* A signal handler that runs between here and to's arrival reads its hub from to's
         * area: that must be this thread's hub already, not the one to last ran on (or, for
         * a new greenlet, its creator's). */
        ((struct coop_thread_state *)(to->tp + thread_state_at))->hub = h;
        if (to->own_tls && !to->keeps_tid && to->tid_written != h->tid && to->loader_held == 0) {
            *(pid_t *)(to->tp + tls.tid_at) = h->tid;
            each_robust(to->tp, move_owner, &(struct robust_walk){ .tid = to->tid_written, .to = h->tid });
            to->tid_written = h->tid;
        }
    }
    if (from->tp != to->tp)
        set_thread_pointer(to->tp);
}

void *coop_os_thread_local(void *addr)
{
    struct coop_hub *h = coop_thread.hub;
    uintptr_t tp = thread_pointer();
    if (h == NULL || tp == h->os_thread)
        return addr;
    return (void *)((uintptr_t)addr - tp + h->os_thread);     /* in integers: another area's address */
}

/* Runs fn with the thread pointer at tp, then puts it back; async-signal-safe. Whatever fn
 * does to thread-locals lands in tp's area. Signals wait meanwhile (but glibc's own two,
 * which fn may be waiting for): a handler would take tp's coop_thread for this thread's,
 * and the initial thread's record, the OS thread 0's, is also the main greenlet's, which
 * names the hub that greenlet runs on. */
static long run_on(uintptr_t tp, long (*fn)(void *), void *arg)
{
    uintptr_t own = thread_pointer();
    if (tp == own)
        return fn(arg);
    /* Added to the mask, not set: in glibc's SIGSETXID handler, 33 stays blocked. */
    uint64_t others = ~(uint64_t)0 & ~(1ULL << (32 - 1)) & ~(1ULL << (33 - 1)), mask;
    coop_sys6(SYS_rt_sigprocmask, SIG_BLOCK, (long)&others, (long)&mask, 8, 0, 0);
    set_thread_pointer(tp);
    long result = fn(arg);
    set_thread_pointer(own);
    coop_sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&mask, 0, 8, 0, 0);
    return result;
}

long coop_tls_run_as_thread(long (*fn)(void *), void *arg)
{
    struct coop_hub *h = coop_thread.hub;
    return run_on(h != NULL ? h->os_tp : thread_pointer(), fn, arg);
}

long coop_tls_run_on_hub_area(long (*fn)(void *), void *arg)
{
    struct coop_hub *h = coop_thread.hub;
    return run_on(h != NULL && coop_running != NULL ? h->hub_g->tp : thread_pointer(), fn, arg);
}

pid_t coop_tls_tid(const struct coop_greenlet *g) { return *(const pid_t *)(g->tp + tls.tid_at); }

pid_t coop_tls_own_tid(void) { return *(const pid_t *)(thread_pointer() + tls.tid_at); }

/* Called before the runtime starts its first thread, when the calling greenlet and its
 * hub's thread are the only ones that run: areas made later get 1 from
 * init_control_block, and glibc's pthread_create sets it in the threads it makes. */
void coop_tls_set_multithreaded(void)
{
    atomic_store(&tls.multithreaded, true);
    *(int *)(thread_pointer() + TCB_MULTIPLE_THREADS) = 1;
    *(int *)(coop_hub_at(0)->os_tp + TCB_MULTIPLE_THREADS) = 1;     /* the main thread's record */
}

/* glibc's fork updated the tid of the control block it runs on, the forking greenlet's, and
 * made it the child's one thread in its list: that record is the child's OS thread 0's now,
 * as the initial thread's is the main greenlet's in the parent. It keeps that thread's tid
 * wherever the greenlet runs, and the thread's handler of glibc's setuid broadcast runs on
 * it (coop_tls_run_as_thread), or glibc would signal that thread for ever. */
static uintptr_t forker_tp;     /* in a forked child: the forking greenlet's record */

void coop_tls_fork_child(struct coop_hub *h, struct coop_greenlet *self)
{
    /* glibc's fork left the other records of its list in its stack cache, with tid 0: those
     * coop still runs on (the hub's; a forker's, in a child forked again) get this thread's
     * tid, or glibc would hand them to a new thread, or free them. */
    uintptr_t records[] = { h->os_tp, h->os_thread, forker_tp != 0 ? forker_tp : self->tp, self->tp };
    for (size_t i = 0; i < sizeof records / sizeof records[0]; i++)
        *(pid_t *)(records[i] + tls.tid_at) = h->tid;
    self->tid_written = h->tid;
    self->keeps_tid = true;
    h->os_tp = self->tp;
    forker_tp = self->tp;
    spare_lock = (coop_lock_t){ 0 };
}
