/* Loading libunwind on first need (see unwind.h). */
#include <dlfcn.h>
#include <stdatomic.h>
#include <ucontext.h>

#include "internal.h"
#include "unwind.h"

#define NAME_OF(fn) NAME_OF_EXPANDED(fn)
#define NAME_OF_EXPANDED(fn) #fn

static struct coop_unwind functions;
static _Atomic(const struct coop_unwind *) loaded;

const struct coop_unwind *coop_unwind(bool may_load)
{
    const struct coop_unwind *u = atomic_load(&loaded);
    if (u != NULL || !may_load)
        return u;
    void *lib = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return NULL;
    /* Concurrent loaders store the same addresses. */
    *(void **)&functions.init_local2 = dlsym(lib, NAME_OF(unw_init_local2));
    *(void **)&functions.get_reg = dlsym(lib, NAME_OF(unw_get_reg));
    *(void **)&functions.get_proc_name = dlsym(lib, NAME_OF(unw_get_proc_name));
    *(void **)&functions.step = dlsym(lib, NAME_OF(unw_step));
    *(void **)&functions.get_proc_info_by_ip = dlsym(lib, NAME_OF(unw_get_proc_info_by_ip));
    unw_addr_space_t *local = dlsym(lib, NAME_OF(unw_local_addr_space));
    if (functions.init_local2 == NULL || functions.get_reg == NULL || functions.get_proc_name == NULL
        || functions.step == NULL || functions.get_proc_info_by_ip == NULL || local == NULL)
        return NULL;
    functions.local_addr_space = *local;
    atomic_store(&loaded, &functions);
    return &functions;
}

/* Loading only: libunwind's first use opens a pipe (to validate addresses), two fds that a
 * program would find missing; only coop_unwind_warm_up makes that first use. */
void coop_diag_prepare(void) { coop_unwind(true); }

/* Windows open on this thread's area (signals nest them): libunwind is at work, and what
 * it opens is the runtime's. */
static __thread unsigned windows_open;

bool coop_runtime_calling(void) { return windows_open > 0; }

/* The cancellation word is also written by other threads' pthread_cancel: atomically, bit
 * by bit, so that a cancellation sent meanwhile stays. Its sender saw cancellation disabled
 * and nudged nothing: the nudge is left for the greenlet's next wait, which then looks at
 * its cancellation (or, if it is already switching into a wait, for the switch: hub.c). A
 * window that a signal opens inside another finds no greenlet running and leaves the word
 * to the outer one: so the bit goes on before coop_running is cleared, and off after it is
 * back. */
struct coop_unwind_window coop_unwind_begin(void)
{
    struct coop_unwind_window window = { .running = coop_running };
    windows_open++;
    if (window.running != NULL) {
        int was = atomic_fetch_or(coop_greenlet_cancel_state(window.running), COOP_CANCEL_DISABLED);
        window.cancel_held = !(was & COOP_CANCEL_DISABLED);
        window.canceled_before = was & COOP_CANCELED;
        coop_running = NULL;
    }
    return window;
}

void coop_unwind_end(struct coop_unwind_window window)
{
    coop_running = window.running;
    windows_open--;
    if (!window.cancel_held)
        return;
    int was = atomic_fetch_and(coop_greenlet_cancel_state(window.running), ~COOP_CANCEL_DISABLED);
    if ((was & COOP_CANCELED) && !window.canceled_before)
        atomic_store(&window.running->nudged, true);
}

bool coop_unwind_symbol(uintptr_t ip, char *buf, size_t len, uintptr_t *offset)
{
    const struct coop_unwind *unw = coop_unwind(true);
    ucontext_t uc;
    unw_cursor_t cursor;
    unw_word_t at;
    if (unw == NULL || getcontext(&uc) != 0)
        return false;
    /* As an interrupted frame: libunwind looks up ip itself, not the byte before. */
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)ip;
    struct coop_unwind_window window = coop_unwind_begin();
    bool named = unw->init_local2(&cursor, (unw_context_t *)&uc, UNW_INIT_SIGNAL_FRAME) == 0
                 && unw->get_proc_name(&cursor, buf, len, &at) == 0;
    coop_unwind_end(window);
    if (named && offset != NULL)
        *offset = at;
    return named;
}

/* libunwind takes locks and reads ELF files on first use: for a report made in a signal
 * handler many times over (the blocking monitor's samples), do that first, here. */
void coop_unwind_warm_up(void)
{
    const struct coop_unwind *unw = coop_unwind(true);
    ucontext_t uc;
    unw_cursor_t cursor;
    if (unw == NULL || getcontext(&uc) != 0)
        return;
    struct coop_unwind_window window = coop_unwind_begin();    /* may run on a greenlet */
    if (unw->init_local2(&cursor, (unw_context_t *)&uc, 0) == 0)
        unw->step(&cursor);
    coop_unwind_end(window);
}
