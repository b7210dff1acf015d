/*
 * Family thread, stdio's FILE locks taken by the program (flockfile). glibc gives such a
 * lock to a thread control block: in programs without TLS of their own every greenlet of a
 * hub shares its OS thread's, so the others would walk into a parked holder's FILE; with
 * TLS each greenlet has its own, so the next printf on that FILE would wait for the holder
 * in glibc's futex, with the hub's thread, forever. A greenlet's FILE locks are therefore
 * let go while it is parked and taken back before it runs on (core/hub.c calls the hooks):
 * what a flockfile region keeps out is every other thread's stdio between two of the
 * holder's blocking calls, not across them.
 */
#include <stdio.h>
#include <stdlib.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

struct held {
    unsigned len, cap;
    struct { FILE *file; unsigned depth; } files[];
};

static struct held **held_by(struct coop_greenlet *g) { return (struct held **)coop_greenlet_held(g); }

/* Counts one more (delta 1) or one fewer (-1) hold of file by g. A record that cannot grow
 * leaves the lock as glibc has it, as without coop. */
static void note(struct coop_greenlet *g, FILE *file, int delta)
{
    struct held *h = *held_by(g);
    unsigned i = 0;
    while (h != NULL && i < h->len && h->files[i].file != file)
        i++;
    if (h == NULL || i == h->len) {
        if (delta < 0)
            return;
        if (h == NULL || h->len == h->cap) {
            unsigned cap = h == NULL ? 4 : h->cap * 2;
            struct held *grown = realloc(h, sizeof *h + cap * sizeof h->files[0]);
            if (grown == NULL)
                return;
            if (h == NULL)
                grown->len = 0;
            grown->cap = cap;
            *held_by(g) = h = grown;
        }
        h->files[h->len++] = (typeof(h->files[0])){ file, 0 };
    }
    h->files[i].depth += delta;
    if (h->files[i].depth > 0)
        return;
    h->files[i] = h->files[--h->len];
    if (h->len == 0) {
        free(h);
        *held_by(g) = NULL;
    }
}

static void release(struct coop_greenlet *g, bool finished)
{
    struct held *h = *held_by(g);
    for (unsigned i = 0; i < h->len; i++)
        for (unsigned d = 0; d < h->files[i].depth; d++)
            REAL(funlockfile)(h->files[i].file);
    if (finished) {
        free(h);
        *held_by(g) = NULL;
    }
}

static void retake(struct coop_greenlet *g)
{
    struct held *h = *held_by(g);
    for (unsigned i = 0; i < h->len; i++)
        for (unsigned d = 0; d < h->files[i].depth; d++)
            REAL(flockfile)(h->files[i].file);
}

void shim_stdio_init(void) { coop_set_hold_hooks(release, retake); }

/* Greenlets of a hub never hold one of these while another runs, so the real calls below
 * wait only for real threads, as they would without coop. */
static struct coop_greenlet *holder(void)
{
    return shim_patched[FAM_thread] ? coop_self() : NULL;
}

EXPORT void flockfile(FILE *file)
{
    REAL(flockfile)(file);
    struct coop_greenlet *g = holder();
    if (g != NULL)
        note(g, file, 1);
}

EXPORT int ftrylockfile(FILE *file)
{
    int r = REAL(ftrylockfile)(file);
    struct coop_greenlet *g = holder();
    if (r == 0 && g != NULL)
        note(g, file, 1);
    return r;
}

EXPORT void funlockfile(FILE *file)
{
    struct coop_greenlet *g = holder();
    if (g != NULL)
        note(g, file, -1);
    REAL(funlockfile)(file);
}
