/* make test-asan: the sanitizer runtime inside a program run under coop. */
#if defined(__SANITIZE_ADDRESS__)
#include <link.h>
#include <sanitizer/asan_interface.h>

#include "internal.h"

/* The runtime's code, [lo, hi): ASan keeps its per-thread state behind pthread keys, and
 * its fiber annotations only hold if that state stays the OS thread's, never a greenlet's. */
static uintptr_t runtime_lo, runtime_hi;

static int find_runtime(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t marker = (uintptr_t)data, lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
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
    return 1;
}

void coop_sanitizer_init(void)
{
    dl_iterate_phdr(find_runtime, (void *)(uintptr_t)__sanitizer_start_switch_fiber);
}

bool coop_from_sanitizer(const void *return_address)
{
    return (uintptr_t)return_address - runtime_lo < runtime_hi - runtime_lo;
}
#endif
