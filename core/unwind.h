/*
 * libunwind, loaded when a report may first need it rather than at start-up: with the
 * liblzma it depends on, it cost every process about 0.1 ms to load, and most processes
 * started under coop are short single-threaded ones (the shells of system() and popen()).
 */
#ifndef COOP_UNWIND_H
#define COOP_UNWIND_H

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <stdbool.h>
#include <stdint.h>

struct coop_unwind {
    int (*init_local2)(unw_cursor_t *, unw_context_t *, int);
    int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
    int (*get_proc_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
    int (*step)(unw_cursor_t *);
    /* Whether ip's function has unwind information (0), in this process (local_addr_space);
     * only once init_local2 has run, which sets the address space up. */
    int (*get_proc_info_by_ip)(unw_addr_space_t, unw_word_t, unw_proc_info_t *, void *);
    unw_addr_space_t local_addr_space;
};

/* The functions, or NULL when libunwind is not loaded (or cannot be). may_load: load it
 * now, which only code outside signal handlers may ask. */
const struct coop_unwind *coop_unwind(bool may_load);
/* Loads it and makes its first use, outside any handler, for the signal handlers that unwind
 * (the blocking monitor's, the profiler's). */
void coop_unwind_warm_up(void);
/* The function that holds the instruction at ip: its name, and ip's offset into it; false
 * when libunwind knows none. Never in a signal handler: libunwind allocates memory to read an
 * ELF file's symbols, and the interrupted code may hold malloc's lock. */
bool coop_unwind_symbol(uintptr_t ip, char *buf, size_t len, uintptr_t *offset);

struct coop_greenlet;
/* Around libunwind's work on a hub's thread: the thread runs as the runtime meanwhile
 * (coop_running NULL), so that libunwind's interposed calls reach libc rather than the
 * greenlet's emulation. Its caches' locks are taken with every signal blocked, by a
 * sigprocmask that must be the kernel's; emulated, a profiling or preemption signal could
 * come in under such a lock, unwind, and wait for it forever. The greenlet's cancellation
 * is held off too: the thread pointer is still its area, and libunwind's address check
 * reads a pipe with glibc's read, a cancellation point that would act on a pending
 * cancellation there, in a signal handler and under libunwind's lock. */
struct coop_unwind_window {
    struct coop_greenlet *running;
    bool cancel_held;           /* running's cancellation was enabled: disabled meanwhile */
    bool canceled_before;       /* and already sent */
};
struct coop_unwind_window coop_unwind_begin(void);
void coop_unwind_end(struct coop_unwind_window window);

#endif
