/* make test-asan: the sanitizer runtime inside a program run under coop. */
#if defined(__SANITIZE_ADDRESS__)
#include <link.h>
#include <string.h>
#include <sanitizer/asan_interface.h>

#include "internal.h"

/* The runtime's code, [lo, hi): ASan keeps its per-thread state behind pthread keys, and
 * its fiber annotations only hold if that state stays the OS thread's, never a greenlet's.
 * Its allocator's cache is in that state: a signal handler that waits while its greenlet
 * was inside ASan's malloc lets the thread's next greenlets into the same cache (two were
 * given one block), so the tests stop threads only outside it (thread_signals world-stop). */
static uintptr_t runtime_lo, runtime_hi;
static const char *runtime_tls;       /* its static TLS block in the first thread, or NULL */
static size_t runtime_tls_size;
static intptr_t runtime_tls_at;       /* from the thread pointer, the same in every thread */

static int find_runtime(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t marker = (uintptr_t)data, lo = UINTPTR_MAX, hi = 0;
    size_t tls_size = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_TLS)
            tls_size = ph->p_memsz;
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (start < lo)
            lo = start;
        if (start + ph->p_memsz > hi)
            hi = start + ph->p_memsz;
    }
    if (marker < lo || marker >= hi)
        return 0;
    runtime_lo = lo;
    runtime_hi = hi;
    runtime_tls = info->dlpi_tls_data;
    runtime_tls_size = tls_size;
    return 1;
}

void coop_sanitizer_init(void)
{
    dl_iterate_phdr(find_runtime, (void *)(uintptr_t)__sanitizer_start_switch_fiber);
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    runtime_tls_at = (intptr_t)runtime_tls - (intptr_t)tp;
}

void coop_san_inherit_tls(uintptr_t tp, uintptr_t from_tp)
{
    if (runtime_tls != NULL)
        memcpy((void *)(tp + runtime_tls_at), (const void *)(from_tp + runtime_tls_at), runtime_tls_size);
}

bool coop_from_sanitizer(const void *return_address)
{
    return (uintptr_t)return_address - runtime_lo < runtime_hi - runtime_lo;
}
#endif
