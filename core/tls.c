/*
 * Thread-local variables, per greenlet. Variables declared __thread or thread_local live in
 * a TLS area per OS thread, which all the greenlets of a hub would share: Rust's std keeps
 * the current thread's handle there (and aborts when a new thread finds it already set),
 * and takes the address of a thread-local as a thread's identity (its channels deadlock
 * when all threads look alike).
 *
 * Where the CPU lets user code set the thread pointer (FSGSBASE, Linux 5.9+), a greenlet
 * of a program with TLS of its own gets a TLS area of its own, as a thread does: a copy of
 * its OS thread's static TLS and thread control block, with the executable's block fresh
 * from its initial image; the switch moves the thread pointer (wrfsbase, no system call)
 * and carries the dynamic-TLS vector along, which stays the OS thread's. Shared libraries'
 * variables start as the creating thread's values. Elsewhere the executable's block alone
 * is kept per greenlet, its contents swapped at each switch.
 */
#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/rseq.h>

#include "internal.h"

#define HWCAP2_FSGSBASE (1 << 1)
#define TCB_DTV 8        /* tcbhead_t: tcb, dtv, self, ... */
#define TCB_SELF 16

static size_t tls_size;             /* the executable's block; 0: it has none */
static const void *tls_image;       /* .tdata; the rest of the block (.tbss) is zero */
static size_t tls_image_size;
static uintptr_t tls_offset;        /* of the block below the thread pointer */

static bool own_tp;                 /* greenlets get their own TLS area */
static size_t area_size, tcb_size;  /* glibc's static TLS, control block included */

static int find_program_tls(struct dl_phdr_info *info, size_t size, void *hub)
{
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_TLS)
            continue;
        if (hub != NULL) {
            ((struct coop_hub *)hub)->tls_block = info->dlpi_tls_data;
        } else {
            tls_size = ph->p_memsz;
            tls_image = (const void *)(info->dlpi_addr + ph->p_vaddr);
            tls_image_size = ph->p_filesz;
        }
    }
    return 1;    /* the first object is the executable */
}

static uintptr_t thread_pointer(void)
{
    uintptr_t tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

bool coop_tls_per_greenlet;

void coop_tls_init(void)
{
    dl_iterate_phdr(find_program_tls, NULL);
    coop_tls_per_greenlet = tls_size > 0;

    void (*static_info)(size_t *, size_t *) = dlsym(RTLD_DEFAULT, "_dl_get_tls_static_info");
    const uint32_t *sizeof_pthread = dlsym(RTLD_DEFAULT, "_thread_db_sizeof_pthread");
    if (tls_size == 0 || !(getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE) || static_info == NULL
        || sizeof_pthread == NULL)
        return;
    size_t align;
    static_info(&area_size, &align);
    tcb_size = *sizeof_pthread;
    own_tp = area_size > tcb_size;
}

void coop_tls_hub_init(struct coop_hub *h)
{
    h->os_tp = thread_pointer();
    if (tls_size == 0)
        return;
    dl_iterate_phdr(find_program_tls, h);
    if (h->tls_block == NULL)
        coop_panic("cannot find the program's TLS block");
    tls_offset = h->os_tp - (uintptr_t)h->tls_block;
}

/* A thread's first values. When coop's core is linked into the program itself (its unit
 * tests), the runtime's own state lives in this block too and is carried over. */
static void fresh_program_block(char *block)
{
    if (tls_image_size > 0)     /* a TLS of zeros only (Go's) has no image */
        memcpy(block, tls_image, tls_image_size);
    memset(block + tls_image_size, 0, tls_size - tls_image_size);
    intptr_t at = (const char *)&coop_thread - (const char *)(thread_pointer() - tls_offset);
    if (at >= 0 && (size_t)at + sizeof coop_thread <= tls_size)
        memcpy(block + at, &coop_thread, sizeof coop_thread);
}

int coop_tls_greenlet_init(struct coop_greenlet *g)
{
    if (tls_size == 0 || g->is_hub || (own_tp && g->is_main))
        return 0;
    if (!own_tp) {
        g->tls = malloc(tls_size);
        if (g->tls == NULL)
            return -1;
        fresh_program_block(g->tls);

        return 0;
    }
    size_t below = area_size - tcb_size;
    g->tls = aligned_alloc(64, (area_size + 63) & ~(size_t)63);
    if (g->tls == NULL)
        return -1;
    memcpy(g->tls, (char *)g->hub->os_tp - below, area_size);
    g->tp = (uintptr_t)g->tls + below;
    fresh_program_block((char *)(g->tp - tls_offset));

    *(uintptr_t *)g->tp = g->tp;
    *(uintptr_t *)(g->tp + TCB_SELF) = g->tp;
    /* The kernel updates the OS thread's rseq area, not this copy: mark it unregistered
     * so that sched_getcpu asks the kernel instead of reading a stale CPU. */
    if (__rseq_size > 0)
        ((struct rseq *)(g->tp + (uintptr_t)__rseq_offset))->cpu_id = RSEQ_CPU_ID_REGISTRATION_FAILED;
    return 0;
}

void coop_tls_greenlet_free(struct coop_hub *h, struct coop_greenlet *g)
{
    if (h->tls_owner == g)
        h->tls_owner = NULL;
    free(g->tls);
}

void coop_tls_enter(struct coop_hub *h, struct coop_greenlet *g)
{
    if (own_tp) {
        uintptr_t from = thread_pointer(), to = g->tp ? g->tp : h->os_tp;
        if (from != to) {
            *(uintptr_t *)(to + TCB_DTV) = *(uintptr_t *)(from + TCB_DTV);
            __asm__ volatile("wrfsbase %0" : : "r"(to) : "memory");
        }
        return;
    }
    if (tls_size == 0 || g->is_hub || h->tls_owner == g)
        return;
    if (h->tls_owner != NULL)
        memcpy(h->tls_owner->tls, h->tls_block, tls_size);
    memcpy(h->tls_block, g->tls, tls_size);
    h->tls_owner = g;
}
