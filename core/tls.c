/*
 * The program's own thread-local variables, per greenlet. Variables declared __thread or
 * thread_local in the executable live in one TLS block per OS thread, which all the
 * greenlets of a hub would share: Rust's std, for one, keeps the current thread's handle
 * there and aborts when a new thread finds it already set. So each greenlet keeps a copy
 * of the block, and the block's contents are swapped when a different program greenlet
 * runs. The executable's block is small (Rust's std: 96 bytes); shared libraries' TLS
 * (glibc's errno aside, which the switch keeps) stays per OS thread.
 */
#include <link.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static size_t tls_size;             /* 0: the program has no TLS of its own */
static const void *tls_image;       /* .tdata; the rest of the block (.tbss) is zero */
static size_t tls_image_size;

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

void coop_tls_init(void) { dl_iterate_phdr(find_program_tls, NULL); }

void coop_tls_hub_init(struct coop_hub *h)
{
    if (tls_size == 0)
        return;
    dl_iterate_phdr(find_program_tls, h);
    if (h->tls_block == NULL)
        coop_panic("cannot find the program's TLS block");
}

int coop_tls_greenlet_init(struct coop_greenlet *g)
{
    if (tls_size == 0 || g->is_hub)
        return 0;
    g->tls = malloc(tls_size);
    if (g->tls == NULL)
        return -1;
    memcpy(g->tls, tls_image, tls_image_size);
    memset((char *)g->tls + tls_image_size, 0, tls_size - tls_image_size);
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
    if (tls_size == 0 || g->is_hub || h->tls_owner == g)
        return;
    if (h->tls_owner != NULL)
        memcpy(h->tls_owner->tls, h->tls_block, tls_size);
    memcpy(h->tls_block, g->tls, tls_size);
    h->tls_owner = g;
}
