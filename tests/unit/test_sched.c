/*
 * The scheduler across OS threads (sched.c, hub.c, greenlet.c): each test stresses one
 * invariant of sched.c's top comment, and would fail (or hang until Check's timeout) if it
 * were broken. Parallelism is proven by construction, never by timing: two greenlets that
 * wait for each other without yielding can only both finish if two hubs run them at once.
 * Tests that need several hubs say so and pass trivially with COOP_HUBS=1.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#define GIVE_UP MS(5000)

/* Spins without yielding until *flag is set, or gives up (a failure) after GIVE_UP. */
static bool spin_until(_Atomic int *flag)
{
    int64_t give_up = coop_now() + GIVE_UP;
    while (!atomic_load(flag))
        if (coop_now() > give_up)
            return false;
    return true;
}

static int hubs(void) { return coop_sched_regular_hubs(); }

/* With one hub, yields until *flag is set (spinning would keep the setter from running). */
static bool wait_for(_Atomic int *flag)
{
    if (hubs() >= 2)
        return spin_until(flag);
    int64_t give_up = coop_now() + GIVE_UP;
    while (!atomic_load(flag) && coop_now() < give_up)
        coop_yield();
    return atomic_load(flag);
}

/* ---- parallelism by construction ---- */

struct pair { _Atomic int *mine, *other; bool met; int hub; };

static void *meet(void *arg)
{
    struct pair *p = arg;
    atomic_store(p->mine, 1);
    p->met = spin_until(p->other);
    p->hub = coop_thread.hub->index;
    return NULL;
}

/* Each spins until the other has arrived: unless one was preempted meanwhile (then the
 * other could take its hub; the meeting is tried again), both spun at once, on two hubs. */
START_TEST(test_two_hubs_run_at_once)
{
    if (hubs() < 2)
        return;
    for (int attempt = 0; attempt < 100; attempt++) {
        _Atomic int a = 0, b = 0;
        struct pair pa = { &a, &b, false, -1 }, pb = { &b, &a, false, -1 };
        uint64_t preemptions = coop_preemptions();
        struct coop_greenlet *ga = unit_spawn(meet, &pa), *gb = unit_spawn(meet, &pb);
        unit_join(ga);
        unit_join(gb);
        ck_assert(pa.met && pb.met);
        if (coop_preemptions() != preemptions)
            continue;
        ck_assert_int_ne(pa.hub, pb.hub);
        return;
    }
    ck_abort_msg("every meeting had a preemption");
}
END_TEST

/* ---- run queues: a greenlet runs on one hub at a time, none is lost ---- */

enum { STEAL_GREENLETS = 64, STEAL_ROUNDS = 2000 };

struct runner {
    _Atomic int running;
    int rounds, overlaps, wrong_self, wrong_hub, wrong_tid;
    uint64_t hubs_seen;
};

static void *yield_many(void *arg)
{
    struct runner *r = arg;
    for (int i = 0; i < STEAL_ROUNDS; i++) {
        if (atomic_exchange(&r->running, 1) != 0)
            r->overlaps++;
        struct coop_hub *h = coop_thread.hub;     /* this greenlet's TLS copy */
        r->hubs_seen |= 1ull << (h->index % 64);
        if (coop_self() != h->current)
            r->wrong_self++;
        if ((pid_t)coop_sys(SYS_gettid, 0, 0, 0) != h->tid)
            r->wrong_hub++;
        if (coop_tls_tid(coop_self()) != h->tid)
            r->wrong_tid++;
        r->rounds++;
        atomic_store(&r->running, 0);
        coop_yield();
    }
    return NULL;
}

START_TEST(test_steal_stress)
{
    static struct runner r[STEAL_GREENLETS];
    struct coop_greenlet *g[STEAL_GREENLETS];
    for (int i = 0; i < STEAL_GREENLETS; i++) {
        r[i] = (struct runner){ .rounds = 0 };
        g[i] = unit_spawn(yield_many, &r[i]);
    }
    uint64_t seen = 0;
    for (int i = 0; i < STEAL_GREENLETS; i++) {
        unit_join(g[i]);
        ck_assert_int_eq(r[i].rounds, STEAL_ROUNDS);
        ck_assert_int_eq(r[i].overlaps, 0);
        ck_assert_int_eq(r[i].wrong_self, 0);
        ck_assert_int_eq(r[i].wrong_hub, 0);
        ck_assert_int_eq(r[i].wrong_tid, 0);
        seen |= r[i].hubs_seen;
    }
    ck_assert_uint_ne(seen, 0);
}
END_TEST

/* Greenlets that must meet on two hubs first, then yield among many: both hubs run while
 * the queues fill, and are stolen from while their owners pop (which hub ends up running
 * which is the machine's business: only "once at a time, every round" is asserted). */
START_TEST(test_steal_while_both_run)
{
    if (hubs() < 2)
        return;
    _Atomic int a = 0, b = 0;
    struct pair pa = { &a, &b, false, -1 }, pb = { &b, &a, false, -1 };
    struct coop_greenlet *ga = unit_spawn(meet, &pa), *gb = unit_spawn(meet, &pb);
    static struct runner r[STEAL_GREENLETS];
    struct coop_greenlet *g[STEAL_GREENLETS];
    for (int i = 0; i < STEAL_GREENLETS; i++) {
        r[i] = (struct runner){ .rounds = 0 };
        g[i] = unit_spawn(yield_many, &r[i]);
    }
    unit_join(ga);
    unit_join(gb);
    for (int i = 0; i < STEAL_GREENLETS; i++) {
        unit_join(g[i]);
        ck_assert_int_eq(r[i].overlaps, 0);
        ck_assert_int_eq(r[i].rounds, STEAL_ROUNDS);
    }
    ck_assert(pa.met && pb.met);
}
END_TEST

/* ---- wakes across hubs: none is lost, none resumes a greenlet still leaving ---- */

enum { PONG_PAIRS = 8, PONG_ROUNDS = 3000 };

struct pong { _Atomic uint32_t turn; int timeouts; _Atomic int running[2]; int overlaps; };
struct pong_side { struct pong *p; uint32_t me; };

static bool not_my_turn(const void *ctx)
{
    const struct pong_side *s = ctx;
    return atomic_load(&s->p->turn) % 2 != s->me;
}

static void *pong_body(void *arg)
{
    struct pong_side *s = arg;
    for (int i = 0; i < PONG_ROUNDS; i++) {
        while (not_my_turn(s))
            if (coop_park(&s->p->turn, not_my_turn, s, ~0u, coop_now() + MS(2000), "unit") == ETIMEDOUT)
                s->p->timeouts++;
        if (atomic_exchange(&s->p->running[s->me], 1) != 0)
            s->p->overlaps++;
        atomic_store(&s->p->running[s->me], 0);
        atomic_fetch_add(&s->p->turn, 1);
        coop_unpark(&s->p->turn, 1, ~0u);
    }
    return NULL;
}

START_TEST(test_wake_stress)
{
    static struct pong p[PONG_PAIRS];
    static struct pong_side side[PONG_PAIRS][2];
    struct coop_greenlet *g[PONG_PAIRS][2];
    for (int i = 0; i < PONG_PAIRS; i++) {
        p[i] = (struct pong){ .timeouts = 0 };
        for (uint32_t s = 0; s < 2; s++) {
            side[i][s] = (struct pong_side){ &p[i], s };
            g[i][s] = unit_spawn(pong_body, &side[i][s]);
        }
    }
    for (int i = 0; i < PONG_PAIRS; i++) {
        unit_join(g[i][0]);
        unit_join(g[i][1]);
        ck_assert_int_eq(atomic_load(&p[i].turn), 2 * PONG_ROUNDS);
        ck_assert_int_eq(p[i].timeouts, 0);           /* a lost wake shows as a timeout */
        ck_assert_int_eq(p[i].overlaps, 0);
    }
}
END_TEST

/* Consumers that time out every few microseconds and park again with the places they kept
 * (park.c), against producers on other hubs that unpark one at a time: no parker is lost
 * from its queue or left in it, and every item is taken once. */
enum { KEPT_CONSUMERS = 8, KEPT_PRODUCERS = 2, KEPT_ITEMS = 4000 };

struct kept_stock { _Atomic int items, taken, produced; };

static bool out_of_stock(const void *ctx)
{
    return atomic_load(&((const struct kept_stock *)ctx)->items) == 0;
}

static void *kept_consumer(void *arg)
{
    struct kept_stock *k = arg;
    for (;;) {
        int n = atomic_load(&k->items);
        if (n > 0) {
            if (atomic_compare_exchange_weak(&k->items, &n, n - 1))
                atomic_fetch_add(&k->taken, 1);
            continue;
        }
        if (atomic_load(&k->taken) == KEPT_ITEMS)
            return NULL;
        coop_park(&k->items, out_of_stock, k, ~0u, coop_now() + 20000, "unit");
    }
}

static void *kept_producer(void *arg)
{
    struct kept_stock *k = arg;
    while (atomic_fetch_add(&k->produced, 1) < KEPT_ITEMS) {
        atomic_fetch_add(&k->items, 1);
        coop_unpark(&k->items, 1, ~0u);
        if (atomic_load(&k->produced) % 4 == 0)
            coop_sleep_until(coop_now() + 50000);   /* past the consumers' deadlines */
    }
    return NULL;
}

START_TEST(test_kept_place_stress)
{
    static struct kept_stock k;
    k = (struct kept_stock){ 0 };
    struct coop_greenlet *g[KEPT_CONSUMERS + KEPT_PRODUCERS];
    for (int i = 0; i < KEPT_CONSUMERS + KEPT_PRODUCERS; i++)
        g[i] = unit_spawn(i < KEPT_CONSUMERS ? kept_consumer : kept_producer, &k);
    for (int i = 0; i < KEPT_CONSUMERS + KEPT_PRODUCERS; i++)
        unit_join(g[i]);
    ck_assert_int_eq(atomic_load(&k.taken), KEPT_ITEMS);
    ck_assert_int_eq(atomic_load(&k.items), 0);
    ck_assert_int_eq(coop_unpark(&k.items, INT_MAX, ~0u), 0);     /* nobody left queued */
}
END_TEST

/* The main greenlet, woken from other hubs (it runs on hub 0 while hub 0 is not handed off:
 * see the next test; a handoff lets it run elsewhere), keeps its thread-locals: the initial
 * thread's control block (pthread_self), its errno, a __thread variable of the program's. */
static void *wake_main(void *arg)
{
    struct pong_side *s = arg;
    pong_body(s);
    return NULL;
}

static __thread int main_mark;

START_TEST(test_main_woken_from_other_hubs)
{
    static struct pong p;
    p = (struct pong){ .timeouts = 0 };
    struct pong_side other = { &p, 1 }, me = { &p, 0 };
    struct coop_greenlet *g = unit_spawn(wake_main, &other);
    pthread_t self = pthread_self();
    int lost = 0;
    main_mark = 42;
    for (int i = 0; i < PONG_ROUNDS; i++) {
        errno = 1000 + i;
        while (not_my_turn(&me))
            if (coop_park(&p.turn, not_my_turn, &me, ~0u, coop_now() + MS(2000), "unit") == ETIMEDOUT)
                p.timeouts++;
        if (errno != 1000 + i || main_mark != 42 || !pthread_equal(pthread_self(), self))
            lost++;
        atomic_fetch_add(&p.turn, 1);
        coop_unpark(&p.turn, 1, ~0u);
    }
    unit_join(g);
    ck_assert_int_eq(p.timeouts, 0);
    ck_assert_int_eq(lost, 0);
}
END_TEST

/* The main greenlet keeps the initial thread's tid wherever it runs, and a greenlet that
 * hub 0 runs has that tid too: glibc's recursive locks (the loader's), whose owner is a tid,
 * let two OS threads in at once. So while hub 0 is not handed off, hub 0 runs the main
 * greenlet: woken by a greenlet on another hub, it comes back to hub 0's thread. */
START_TEST(test_main_greenlet_runs_on_hub_0)
{
    if (unit_one_hub())
        return;
    static struct pong p;
    p = (struct pong){ .timeouts = 0 };
    struct pong_side other = { &p, 1 }, me = { &p, 0 };
    uint64_t handoffs = unit_handoffs();
    struct coop_greenlet *g = unit_spawn(wake_main, &other);
    pid_t hub0 = coop_hub_at(0)->tid;
    int elsewhere = 0, partner_elsewhere = 0;
    bool parked = false;    /* an earlier test's handoff may have left main on another hub */
    for (int i = 0; i < PONG_ROUNDS; i++) {
        while (not_my_turn(&me)) {
            if (coop_park(&p.turn, not_my_turn, &me, ~0u, coop_now() + MS(2000), "unit") == ETIMEDOUT)
                p.timeouts++;
            parked = true;
        }
        if (parked && (pid_t)syscall(SYS_gettid) != hub0)
            elsewhere++;
        if (coop_greenlet_os_thread(g) != coop_greenlet_os_thread(coop_self()))
            partner_elsewhere++;     /* it runs on another hub: main's wakes come from there */
        atomic_fetch_add(&p.turn, 1);
        coop_unpark(&p.turn, 1, ~0u);
    }
    unit_join(g);
    ck_assert_int_eq(p.timeouts, 0);
    if (unit_handoffs() == handoffs && partner_elsewhere > 0)
        ck_assert_msg(elsewhere == 0, "main ran on another hub's thread %d times of %d (its partner on another %d times)",
                      elsewhere, PONG_ROUNDS, partner_elsewhere);
}
END_TEST

/* ---- joins and detaches racing with the end of the greenlet, on other hubs ---- */

enum { JOIN_SPAWNERS = 4, JOIN_EACH = 400 };

static void *quick(void *arg)
{
    if ((intptr_t)arg % 3 == 0)
        coop_yield();
    return (void *)((intptr_t)arg * 2);
}

static void *spawn_and_join(void *arg)
{
    intptr_t base = (intptr_t)arg, sum = 0;
    for (intptr_t i = 0; i < JOIN_EACH; i++) {
        struct coop_greenlet *g;
        struct coop_spawn_attr attr = { .guard_size = 4096, .detached = i % 5 == 0 };
        if (coop_spawn(&g, quick, (void *)(base + i), &attr) != 0)
            return (void *)-1;
        if (i % 5 == 0)
            continue;                         /* detached: freed by its hub */
        if (i % 7 == 0) {                     /* detached after the fact, maybe finished */
            coop_yield();
            coop_detach(g);
            continue;
        }
        void *r;
        if (coop_join(g, &r, COOP_NO_DEADLINE) != 0)
            return (void *)-1;
        sum += (intptr_t)r;
    }
    return (void *)sum;
}

START_TEST(test_join_stress)
{
    struct coop_greenlet *g[JOIN_SPAWNERS];
    for (intptr_t i = 0; i < JOIN_SPAWNERS; i++)
        g[i] = unit_spawn(spawn_and_join, (void *)(i * 100000));
    for (intptr_t i = 0; i < JOIN_SPAWNERS; i++) {
        intptr_t expect = 0;
        for (intptr_t k = 0; k < JOIN_EACH; k++)
            if (k % 5 != 0 && k % 7 != 0)
                expect += (i * 100000 + k) * 2;
        ck_assert_int_eq((intptr_t)unit_join(g[i]), expect);
    }
    /* Detached ones may still be leaving: wait for every greenlet to be gone. */
    int64_t give_up = coop_now() + GIVE_UP;
    while (!coop_alone() && coop_now() < give_up)
        coop_sleep_until(coop_now() + MS(1));
}
END_TEST

/* ---- fds: a close reaches a waiter registered in another hub's epoll set ---- */

struct fd_waiter_probe { int fd; _Atomic int closer_here, waiting; int result, hub; struct coop_greenlet *self; };

/* With two hubs, waiter and closer each hold a hub at the same moment (the closer spins
 * until the waiter waits), so the waiter's fd is in the other hub's set by construction. */
static void *wait_readable(void *arg)
{
    struct fd_waiter_probe *w = arg;
    wait_for(&w->closer_here);
    w->hub = coop_thread.hub->index;
    w->self = coop_self();
    atomic_store(&w->waiting, 1);
    w->result = coop_wait_fd(w->fd, COOP_READ, coop_now() + GIVE_UP);
    return NULL;
}

struct closer { struct fd_waiter_probe *w; int hub; bool saw; };

static void *close_when_waiting(void *arg)
{
    struct closer *c = arg;
    c->hub = coop_thread.hub->index;
    atomic_store(&c->w->closer_here, 1);
    c->saw = wait_for(&c->w->waiting);       /* holds this hub: the waiter is on another */
    /* A forget before the wait would leave the wait to its time-out: the fd is still open. */
    unit_wait_in(c->w->self, WAIT_FD);
    coop_fd_forget(c->w->fd);
    return NULL;
}

START_TEST(test_close_wakes_waiter_on_other_hub)
{
    int sv[2];
    /* A preemption of the spinning closer may let the waiter onto its hub: then again. */
    for (int attempt = 0;; attempt++) {
        ck_assert_msg(attempt < 100, "every attempt had a preemption");
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        struct fd_waiter_probe w = { .fd = sv[0] };
        struct closer c = { .w = &w };
        uint64_t preemptions = coop_preemptions();
        struct coop_greenlet *gc = unit_spawn(close_when_waiting, &c);
        struct coop_greenlet *gw = unit_spawn(wait_readable, &w);
        unit_join(gw);
        unit_join(gc);
        ck_assert(c.saw);
        ck_assert_int_eq(w.result, EBADF);
        close(sv[0]);
        if (hubs() < 2)
            break;
        if (coop_preemptions() == preemptions) {
            ck_assert_int_ne(w.hub, c.hub);
            break;
        }
        close(sv[1]);
    }
    /* The number is free for reuse: a new fd there waits and wakes as any other. */
    int again[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, again), 0);
    ck_assert_int_eq(coop_wait_fd(again[0], COOP_READ, coop_now() + MS(10)), ETIMEDOUT);
    ck_assert_int_eq(write(again[1], "x", 1), 1);
    ck_assert_int_eq(coop_wait_fd(again[0], COOP_READ, coop_now() + GIVE_UP), 0);
    close(again[0]);
    close(again[1]);
    close(sv[1]);
}
END_TEST

/* An fd is in one hub's set. A greenlet that waits for it on another hub links its waiter
 * after its own EAGAIN: an edge that the fd's hub took in between, waking nobody or only
 * another waiter of the fd, must not be lost: the byte is there, as a level-triggered
 * poll would say (fdwait.c: the waiter, not the one greenlet known to have run since that
 * edge, looks at the fd once linked, or, waiting away twice in a row, moves the fd to its
 * own hub's set). */
struct far_reader { int fd, home, hub, result; _Atomic int started; };

/* Notes where the reader runs; on the fd's hub, false, and the try does not count. */
static bool runs_away(struct far_reader *r)
{
    r->hub = coop_thread.hub->index;
    atomic_store(&r->started, 1);
    if (r->hub == r->home)
        r->result = -1;
    return r->hub != r->home;
}

/* Closes the pair (forgetting it first, as the shim's close does); whether the try counts:
 * the reader ran away from the fd's hub, and no preemption may have let it elsewhere. */
static bool close_and_count(int sv[2], const struct far_reader *r, uint64_t preemptions)
{
    for (int i = 0; i < 2; i++) {
        coop_fd_forget(sv[i]);
        close(sv[i]);
    }
    return r->result != -1 && coop_preemptions() == preemptions;
}

/* A socket pair whose sv[0] a wait put in this hub's set, its home: that hub's index. */
static int pair_at_home(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int home = coop_thread.hub->index;
    ck_assert_int_eq(coop_wait_fd(sv[0], COOP_READ, coop_now() + MS(1)), ETIMEDOUT);
    return home;
}

static void *read_away_from_the_fds_hub(void *arg)
{
    struct far_reader *r = arg;
    if (runs_away(r))
        r->result = coop_wait_fd(r->fd, COOP_READ, coop_now() + GIVE_UP);
    return NULL;
}

/* One try; false when the reader ran on the fd's hub or a preemption may have let it. */
static bool wait_away_from_the_fds_hub(void)
{
    int sv[2];
    int home = pair_at_home(sv);
    uint64_t preemptions = coop_preemptions();
    struct far_reader r = { .fd = sv[0], .home = home };
    /* The edge of this byte is taken now, by every hub's poll, and wakes nobody. */
    ck_assert_int_eq(write(sv[1], "x", 1), 1);
    for (struct coop_hub *h = coop_hub_at(0); h != NULL; h = coop_hub_next(h))
        coop_drain_fdset(coop_thread.hub, h);
    struct coop_greenlet *g = unit_spawn(read_away_from_the_fds_hub, &r);
    ck_assert(spin_until(&r.started));      /* holds this hub: the reader runs on another */
    unit_join(g);
    if (!close_and_count(sv, &r, preemptions))
        return false;
    ck_assert_int_eq(r.result, 0);
    return true;
}

/* The same when the edge wakes another waiter: the main greenlet waits for the fd on its
 * home; on another hub, a greenlet writes a byte, takes the edge from the home's set (as
 * an adopter's poll would), which wakes the main greenlet, then waits for the fd itself:
 * the byte is there for it too. */
struct second_reader { struct far_reader r; struct coop_greenlet *first; int write_end; };

static void *take_the_edge_then_wait(void *arg)
{
    struct second_reader *s = arg;
    struct far_reader *r = &s->r;
    if (!runs_away(r))
        return NULL;
    /* Spins, not sleeps: a wait could end on the fd's hub. Its waiter is linked by then. */
    while (coop_gstate_get(s->first) != G_WAITING)
        ;
    for (int64_t until = coop_now() + MS(1); coop_now() < until;)
        ;
    if (write(s->write_end, "x", 1) != 1)
        return (void *)-1;
    coop_drain_fdset(coop_thread.hub, coop_hub_at(r->home));
    r->result = coop_wait_fd(r->fd, COOP_READ, coop_now() + GIVE_UP);
    return NULL;
}

static bool second_wait_away_from_the_fds_hub(void)
{
    int sv[2];
    int home = pair_at_home(sv);
    uint64_t preemptions = coop_preemptions();
    struct second_reader s = { .r = { .fd = sv[0], .home = home }, .first = coop_self(),
                               .write_end = sv[1] };
    struct coop_greenlet *g = unit_spawn(take_the_edge_then_wait, &s);
    ck_assert(spin_until(&s.r.started));    /* holds this hub: the reader runs on another */
    int mine = s.r.result == -1 ? 0 : coop_wait_fd(sv[0], COOP_READ, coop_now() + GIVE_UP);
    ck_assert_ptr_null(unit_join(g));
    if (!close_and_count(sv, &s.r, preemptions))
        return false;
    ck_assert_int_eq(mine, 0);
    ck_assert_int_eq(s.r.result, 0);
    return true;
}

struct away_reader { struct far_reader r; _Atomic int first_done, written, consumed, done; int first, third; };

/* The first two waits of both readers below, away from the fd's hub: one that ends at its
 * deadline, then, once the main greenlet has written, one until the fd is ready (r.result).
 * 1; 0 if it runs on the fd's hub; -1 if the main greenlet never wrote. */
static int wait_away_twice(struct away_reader *a)
{
    struct far_reader *r = &a->r;
    if (!runs_away(r))
        return 0;
    a->first = coop_wait_fd(r->fd, COOP_READ, coop_now() + MS(1));
    atomic_store(&a->first_done, 1);
    if (!spin_until(&a->written))     /* holds this hub: the main greenlet's waits end elsewhere */
        return -1;
    r->result = coop_wait_fd(r->fd, COOP_READ, coop_now() + GIVE_UP);
    return 1;
}

/* Twice in a row away from the fd's hub: the first wait ends at its deadline; the home
 * takes the edge of a byte; the second wait, which moves the fd into the reader's hub's
 * set, must see the byte. Then the fd's first hub stops polling (the main greenlet spins
 * on it) and a second byte comes: only the reader's own hub's set, where the fd moved,
 * can end its third wait. */
static void *wait_twice_away(void *arg)
{
    struct away_reader *t = arg;
    int twice = wait_away_twice(t);
    if (twice <= 0)
        return twice < 0 ? (void *)-1 : NULL;
    char c;
    if (read(t->r.fd, &c, 1) != 1)
        return (void *)-1;
    atomic_store(&t->consumed, 1);
    t->third = coop_wait_fd(t->r.fd, COOP_READ, coop_now() + GIVE_UP);
    atomic_store(&t->done, 1);
    return NULL;
}

static bool wait_twice_away_from_the_fds_hub(void)
{
    int sv[2];
    int home = pair_at_home(sv);
    uint64_t preemptions = coop_preemptions();
    struct away_reader t = { .r = { .fd = sv[0], .home = home } };
    struct coop_greenlet *g = unit_spawn(wait_twice_away, &t);
    ck_assert(spin_until(&t.r.started));    /* holds this hub: the reader runs on another */
    if (t.r.result != -1) {
        ck_assert(spin_until(&t.first_done));
        ck_assert_int_eq(write(sv[1], "x", 1), 1);
        for (struct coop_hub *h = coop_hub_at(0); h != NULL; h = coop_hub_next(h))
            coop_drain_fdset(coop_thread.hub, h);
        atomic_store(&t.written, 1);
        if (spin_until(&t.consumed)) {
            ck_assert_int_eq(write(sv[1], "y", 1), 1);
            spin_until(&t.done);    /* this hub does not poll meanwhile */
        }
    }
    ck_assert_ptr_null(unit_join(g));
    if (!close_and_count(sv, &t.r, preemptions))
        return false;
    ck_assert_int_eq(t.first, ETIMEDOUT);
    ck_assert_int_eq(t.r.result, 0);
    ck_assert_int_eq(t.third, 0);
    return true;
}

/* A look stops counting once another edge is dispatched: the reader waits away from the
 * fd's hub (and looks: the entry then counts its next try as after the fd's last edge);
 * the main greenlet waits on the fd's hub in turn, so that the reader's next wait away is
 * not a second in a row (which would move the fd); a byte's edge, taken by the home's
 * poll, wakes nobody. The reader's next wait away must look again and see the byte: the
 * home's set reports nothing more. */
static void *look_then_wait_away(void *arg)
{
    return wait_away_twice(arg) < 0 ? (void *)-1 : NULL;
}

static bool wait_away_after_a_look(void)
{
    int sv[2];
    int home = pair_at_home(sv);
    uint64_t preemptions = coop_preemptions();
    struct away_reader l = { .r = { .fd = sv[0], .home = home } };
    struct coop_greenlet *g = unit_spawn(look_then_wait_away, &l);
    ck_assert(spin_until(&l.r.started));    /* holds this hub: the reader runs on another */
    if (l.r.result != -1) {
        ck_assert(spin_until(&l.first_done));
        ck_assert_int_eq(coop_wait_fd(sv[0], COOP_READ, coop_now() + MS(1)), ETIMEDOUT);
        ck_assert_int_eq(coop_thread.hub->index, l.r.home);
        ck_assert_int_eq(write(sv[1], "x", 1), 1);
        coop_drain_fdset(coop_thread.hub, coop_hub_at(l.r.home));
        atomic_store(&l.written, 1);
    }
    ck_assert_ptr_null(unit_join(g));
    if (!close_and_count(sv, &l.r, preemptions))
        return false;
    ck_assert_int_eq(l.first, ETIMEDOUT);
    ck_assert_int_eq(l.r.result, 0);
    return true;
}

START_TEST(test_wait_away_from_the_fds_hub)
{
    if (hubs() < 2)
        return;
    for (int attempt = 0; !wait_away_from_the_fds_hub(); attempt++)
        ck_assert_msg(attempt < 100, "the reader never ran away from the fd's hub");
    for (int attempt = 0; !second_wait_away_from_the_fds_hub(); attempt++)
        ck_assert_msg(attempt < 100, "the second reader never ran away from the fd's hub");
    for (int attempt = 0; !wait_twice_away_from_the_fds_hub(); attempt++)
        ck_assert_msg(attempt < 100, "the twice reader never ran away from the fd's hub");
    for (int attempt = 0; !wait_away_after_a_look(); attempt++)
        ck_assert_msg(attempt < 100, "the looking reader never ran away from the fd's hub");
}
END_TEST

/* A poll that makes many greenlets ready wakes a sleeping hub to take some (sched.c: the
 * helper for a large batch of fd wakes). The waiters of fds in the main greenlet's hub's
 * set are woken together, and each yields until one of them has run on another hub:
 * only that poll's wake can get there, as nothing else wakes a sleeping hub here (yields
 * are no spawns, and the hub's switch count moves, so the monitor sees nothing stand
 * still); without it every greenlet gives up. */
enum { BATCH = 32 };

struct batch_waiter { int fd, home; _Atomic int *waiting, *elsewhere; int result; };

static void *wait_then_look_for_another_hub(void *arg)
{
    struct batch_waiter *w = arg;
    atomic_fetch_add(w->waiting, 1);
    w->result = coop_wait_fd(w->fd, COOP_READ, coop_now() + GIVE_UP);
    int64_t give_up = coop_now() + GIVE_UP;
    while (!atomic_load(w->elsewhere) && coop_now() < give_up) {
        if (coop_thread.hub->index != w->home)
            atomic_store(w->elsewhere, 1);
        coop_yield();
    }
    return NULL;
}

START_TEST(test_a_batch_of_fd_wakes_wakes_a_helper)
{
    if (hubs() < 2)
        return;
    int sv[BATCH][2];
    struct coop_fd_event set[BATCH];
    struct batch_waiter w[BATCH];
    struct coop_greenlet *g[BATCH];
    _Atomic int waiting = 0, elsewhere = 0;
    for (int i = 0; i < BATCH; i++) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]), 0);
        set[i] = (struct coop_fd_event){ sv[i][0], COOP_READ };
    }
    /* Every fd's home is this hub: the waiters, wherever they run, wait for its poll. */
    ck_assert_int_eq(coop_wait_fds(set, BATCH, coop_now() + MS(1)), ETIMEDOUT);
    for (int i = 0; i < BATCH; i++) {
        w[i] = (struct batch_waiter){ .fd = sv[i][0], .home = coop_thread.hub->index, .waiting = &waiting,
                                      .elsewhere = &elsewhere };
        g[i] = unit_spawn(wait_then_look_for_another_hub, &w[i]);
    }
    int64_t give_up = coop_now() + GIVE_UP;
    for (int i = 0; i < BATCH && coop_now() < give_up; i++)
        while (atomic_load(&waiting) < BATCH || coop_gstate_get(g[i]) != G_WAITING)
            if (coop_now() > give_up)
                break;
            else
                coop_yield();
    /* The other hubs idle by now; once one sleeps, only a wake gets it to steal. */
    for (bool one_sleeps = false; !one_sleeps && coop_now() < give_up;) {
        for (struct coop_hub *h = coop_hub_at(0); h != NULL; h = coop_hub_next(h))
            one_sleeps |= h != coop_thread.hub && atomic_load(&h->state) == HUB_SLEEPING;
        coop_yield();
    }
    for (int i = 0; i < BATCH; i++)
        ck_assert_int_eq(write(sv[i][1], "x", 1), 1);
    for (int i = 0; i < BATCH; i++) {
        unit_join(g[i]);
        ck_assert_int_eq(w[i].result, 0);
    }
    ck_assert_msg(atomic_load(&elsewhere), "no other hub ran a greenlet of the batch");
    for (int i = 0; i < BATCH; i++)
        for (int j = 0; j < 2; j++) {
            coop_fd_forget(sv[i][j]);
            close(sv[i][j]);
        }
}
END_TEST

/* ---- rounds: the hub's own loop counts against a round ---- */

/* A greenlet that creates and joins a child, over and over, on one hub: the child runs by
 * a direct switch, ends with nothing else ready, and the hub's loop runs the joiner it
 * woke, mid-round and without a poll (hub.c). That pass counts against the round as a
 * direct switch does, so the hub polls at least once every COOP_ROUND_MIN / 2 + 1 pairs
 * (counted by the hub itself); were the passes not counted, only once every
 * COOP_ROUND_MIN + 1, and work that kept coming in through the loop could keep the fds from
 * being looked at. The check sits between the two. */
enum { ROUND_PAIRS = 4000 };

static void *return_at_once(void *arg) { return arg; }

START_TEST(test_the_loop_counts_against_the_round)
{
    if (hubs() != 1)
        return;
    struct coop_hub *h = coop_thread.hub;
    uint64_t polls = h->polls;
    for (int i = 0; i < ROUND_PAIRS; i++)
        unit_join(unit_spawn(return_at_once, NULL));
    ck_assert_ptr_eq(coop_thread.hub, h);
    ck_assert_uint_ge(h->polls - polls, ROUND_PAIRS / (COOP_ROUND_MIN * 3 / 4));
}
END_TEST

/* ---- the threadpool: a record outlives neither of its two owners ---- */

enum { OFFLOAD_GREENLETS = 32, OFFLOADS_EACH = 30 };

static void add_one(void *counter) { atomic_fetch_add((_Atomic int *)counter, 1); }

/* Each job's completion may be collected by another greenlet's submission before its own
 * waiter looks at it: the waiter must still find its record whole. */
static void *offload_many(void *unused)
{
    (void)unused;
    int wrong = 0;
    for (int i = 0; i < OFFLOADS_EACH; i++) {
        _Atomic int counter = 0;
        coop_offload(add_one, &counter);
        wrong += atomic_load(&counter) != 1;
    }
    return (void *)(intptr_t)wrong;
}

START_TEST(test_offload_stress)
{
    struct coop_greenlet *g[OFFLOAD_GREENLETS];
    for (int i = 0; i < OFFLOAD_GREENLETS; i++)
        g[i] = unit_spawn(offload_many, NULL);
    for (int i = 0; i < OFFLOAD_GREENLETS; i++)
        ck_assert_int_eq((int)(intptr_t)unit_join(g[i]), 0);
}
END_TEST

/* ---- handoff: hubs stuck in system calls coop did not make cooperative ---- */

struct raw_reader { int fd; _Atomic int about_to_block; long got; };

static void *raw_read(void *arg)
{
    struct raw_reader *r = arg;
    char c;
    atomic_store(&r->about_to_block, 1);
    r->got = coop_sys(SYS_read, r->fd, &c, 1);      /* blocks this hub's OS thread */
    return NULL;
}

struct rescuer { struct raw_reader *readers; int n, fds[8]; int sleeps; };

/* Sleeps (a deadline in some hub's heap) until every reader is about to block, then
 * writes each its byte: it can only run while every hub is stuck if another OS thread
 * takes over a stuck hub's timers and queue. */
static void *rescue(void *arg)
{
    struct rescuer *r = arg;
    for (int i = 0; i < r->n; i++)
        while (!atomic_load(&r->readers[i].about_to_block)) {
            coop_sleep_until(coop_now() + MS(1));
            r->sleeps++;
        }
    coop_sleep_until(coop_now() + MS(20));
    for (int i = 0; i < r->n; i++)
        if (write(r->fds[i], "x", 1) != 1)
            return (void *)-1;
    return NULL;
}

/* One reader per hub blocks that hub's thread in a raw read, until the rescuer, which can
 * only run on a hub another thread took over, writes each its byte. The rescuer is a
 * greenlet of its own, or the main greenlet (the test's body): on one hub, the reader
 * then blocks the very thread the main greenlet ran on, and waits for it. */
static void block_every_hub_once(bool main_rescues)
{
    int n = hubs() > 8 ? 8 : hubs();
    struct raw_reader readers[8];
    struct rescuer r = { .readers = readers, .n = n };
    int pipes[8][2];
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(pipe(pipes[i]), 0);
        readers[i] = (struct raw_reader){ .fd = pipes[i][0] };
        r.fds[i] = pipes[i][1];
    }
    struct coop_greenlet *gr = main_rescues ? NULL : unit_spawn(rescue, &r), *g[8];
    for (int i = 0; i < n; i++)
        g[i] = unit_spawn(raw_read, &readers[i]);
    if (main_rescues)
        ck_assert_ptr_null(rescue(&r));
    for (int i = 0; i < n; i++)
        unit_join(g[i]);
    if (!main_rescues)
        ck_assert_ptr_null(unit_join(gr));
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(readers[i].got, 1);
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
}

START_TEST(test_handoff_when_every_hub_blocks)
{
    block_every_hub_once(false);
    struct coop_sched_stats s;
    coop_sched_stats(&s);
    ck_assert_uint_ge(s.handoffs, 1);
}
END_TEST

/* A program at its RLIMIT_NOFILE: the monitor cannot open /proc to see that a hub's thread
 * sleeps, and must hand the hub's work off all the same (its fd set may hold the events
 * other greenlets wait for: test_faults_emfile). A reader blocks its hub in a raw read,
 * with the main greenlet (joining it) alive; a real thread gives the descriptors back and
 * writes the byte only once a handoff has happened, or after 20 s (a hang guard). No
 * descriptor can be opened meanwhile, so no spare can start either: the count is the
 * monitor's decision alone. The reader starts, and ends, with descriptors to spare, and
 * hub 0's greenlet has run: ASan reads /proc/self/maps at a context's first run. */
struct release_after_handoff {
    int fd;
    _Atomic int *reader_blocks;
    struct rlimit limit;
    uint64_t handoffs_before;       /* counted before the reader could block: any earlier */
    bool saw_handoff;               /* one was not for it, and a later one may come at once */
};
struct reader_when_told { struct raw_reader r; volatile int started, go; };

static void *raw_read_when_told(void *arg)
{
    struct reader_when_told *t = arg;
    t->started = 1;
    unit_yield_until(&t->go);
    return raw_read(&t->r);
}

static void *release_after_handoff(void *arg)
{
    struct release_after_handoff *r = arg;
    struct coop_sched_stats s;
    while (!atomic_load(r->reader_blocks))
        sched_yield();
    for (int ms = 0; ms < 20000; ms++) {
        coop_sched_stats(&s);
        if (s.handoffs > r->handoffs_before) {
            r->saw_handoff = true;
            break;
        }
        struct timespec one = { 0, 1000000 };
        nanosleep(&one, NULL);
    }
    return setrlimit(RLIMIT_NOFILE, &r->limit) == 0 && write(r->fd, "x", 1) == 1 ? NULL : (void *)-1;
}

START_TEST(test_handoff_without_free_fds)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    struct reader_when_told reader = { .r = { .fd = p[0] } };
    struct coop_greenlet *g = unit_spawn(raw_read_when_told, &reader);
    unit_yield_until(&reader.started);
    struct release_after_handoff r = { .fd = p[1], .reader_blocks = &reader.r.about_to_block };
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &r.limit), 0);
    struct coop_sched_stats s;
    coop_sched_stats(&s);
    r.handoffs_before = s.handoffs;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, release_after_handoff, &r), 0);
    /* Hub 0's own greenlet has run: its first run, as any context's, has ASan read
     * /proc/self/maps (the context's TLS is new to ASan). Only that greenlet polls hub 0, and
     * a wait's deadline is looked at by polls. */
    while (__atomic_load_n(&coop_hub_at(0)->passes, __ATOMIC_RELAXED) == 0)
        coop_sleep_until(coop_now() + MS(1));
    struct rlimit none = { .rlim_cur = 0, .rlim_max = r.limit.rlim_max };
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
    reader.go = 1;
    unit_join(g);
    void *written;
    pthread_join(t, &written);
    close(p[0]);
    close(p[1]);
    ck_assert_int_eq(reader.r.got, 1);
    ck_assert_ptr_null(written);
    ck_assert_msg(r.saw_handoff, "no handoff in 20 s while the reader blocked its hub without free fds");
}
END_TEST

/* A hub's wake fd is level-triggered in its fd set, which its adopter polls while it is
 * away: a wake written then (as by a waker that raced with the hub's going away) must be
 * taken by the adopter, whose own sleep would otherwise end at once for as long as the hub
 * stays away. A reader blocks its hub in a raw read; once another thread adopted that hub,
 * the test writes the hub's wake fd and waits for the adopter to read it (20 s at most: a
 * hang guard). */
START_TEST(test_a_wake_for_an_away_hub_is_taken_by_its_adopter)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    struct raw_reader reader = { .fd = p[0] };
    struct coop_greenlet *g = unit_spawn(raw_read, &reader);
    while (!atomic_load(&reader.about_to_block))
        coop_sleep_until(coop_now() + MS(1));
    struct coop_hub *away = g->hub;
    while (atomic_load(&away->adopter) == NULL)     /* Check's timeout: a hang guard */
        coop_sleep_until(coop_now() + MS(1));
    uint64_t one = 1;
    ck_assert_int_eq(write(away->wake_fd, &one, sizeof one), sizeof one);
    struct pollfd wake = { .fd = away->wake_fd, .events = POLLIN };
    int ms = 0;
    while (poll(&wake, 1, 0) == 1 && ms++ < 20000)
        coop_sleep_until(coop_now() + MS(1));
    ck_assert_msg(ms <= 20000, "the adopter left the wake of a hub stuck in a system call unread");
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    unit_join(g);
    ck_assert_int_eq(reader.got, 1);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* As in Go's runtime under coop: the main greenlet ends a raw wait that blocks the thread
 * it last ran on. */
START_TEST(test_handoff_lets_the_main_greenlet_rescue)
{
    block_every_hub_once(true);
    struct coop_sched_stats s;
    coop_sched_stats(&s);
    ck_assert_uint_ge(s.handoffs, 1);
}
END_TEST

/* ---- handoff: hubs held by greenlets that cannot be preempted ---- */

/* As many spinners as hubs compute in this binary's code, coop's own, where preemption is
 * always refused. Each first spawns a batch of greenlets, queued behind it on its hub, so
 * that greenlets wait that only that hub can run (unless a thief took them: an adopter
 * running elsewhere), and spins until its hub is away or its queue empty. It then spawns a
 * second batch, onto its away hub's queue (its own pushes, beside the adopter's takes),
 * and spins on until the main greenlet has counted every spawned greenlet run. Main sleeps
 * meanwhile, a deadline in hub 0's heap: while every hub spins, only an adopter can run
 * it. */
enum { SPAWNS_EACH = 50 };
struct unpreemptible { _Atomic int spawned_ran, stop; };

static void *count_run(void *arg)
{
    atomic_fetch_add(&((struct unpreemptible *)arg)->spawned_ran, 1);
    return NULL;
}

static void *spin_unpreemptible(void *arg)
{
    struct unpreemptible *u = arg;
    struct coop_greenlet *spawned[2 * SPAWNS_EACH];
    struct coop_hub *h = coop_self()->hub;      /* nothing here switches: it stays */
    for (int i = 0; i < SPAWNS_EACH; i++)
        spawned[i] = unit_spawn(count_run, u);
    while (!coop_sched_is_away(h) && coop_sched_queued_on(h))
        ;
    for (int i = SPAWNS_EACH; i < 2 * SPAWNS_EACH; i++)
        spawned[i] = unit_spawn(count_run, u);
    while (!atomic_load(&u->stop))
        ;
    for (int i = 0; i < 2 * SPAWNS_EACH; i++)
        unit_join(spawned[i]);
    return NULL;
}

START_TEST(test_handoff_of_hubs_held_by_unpreemptible_greenlets)
{
    int n = hubs();
    struct unpreemptible u = { 0 };
    struct coop_greenlet *g[COOP_MAX_REGULAR_HUBS];
    for (int i = 0; i < n; i++)
        g[i] = unit_spawn(spin_unpreemptible, &u);
    while (atomic_load(&u.spawned_ran) < n * 2 * SPAWNS_EACH)     /* Check's timeout: a hang guard */
        coop_sleep_until(coop_now() + MS(1));
    atomic_store(&u.stop, 1);
    for (int i = 0; i < n; i++)
        unit_join(g[i]);
    struct coop_sched_stats s;
    coop_sched_stats(&s);
    ck_assert_uint_ge(s.handoffs, 1);
}
END_TEST

/* A hand-off is answered whoever adopted the hub before. A hub that was away keeps naming
 * the adopter of that time until the adopter's next iteration lets go, and an adopter held
 * by a greenlet that cannot be preempted has none: the hub that came for the next hand-off
 * left the hub to it, using the hand-off up, and a greenlet that only that hub's adopter
 * could run waited for ever (on three hubs a stop of the world could leave the main
 * greenlet so in hub 0's inbox; found by reading). Two greenlets hold two hubs, meeting by
 * spinning; one lets a greenlet start a sleep on its hub first, whose deadline only that
 * hub's poll or its adopter runs, names the other's hub as its hub's adopter, as such a
 * stale adopter would be, and hands its hub off as the monitor does: the sleeper must wake.
 * The monitor hands off no hub held by a computing greenlet here (preemption off), so
 * nothing else would wake it; a sleeping hub or a spare answers. */
struct held_adopter {
    _Atomic int y_here, asleep, woke, done;
    struct coop_hub *y, *slept_on;
    bool set_up, woke_in_time;
};

static void *sleep_on_this_hub(void *arg)
{
    struct held_adopter *t = arg;
    t->slept_on = coop_thread.hub;
    atomic_store(&t->asleep, 1);
    coop_sleep_until(coop_now() + MS(1));
    atomic_store(&t->woke, 1);
    return NULL;
}

static void *hold_as_adopter(void *arg)
{
    struct held_adopter *t = arg;
    t->y = coop_self()->hub;
    atomic_store(&t->y_here, 1);
    return spin_until(&t->done) ? NULL : (void *)-1;
}

static void *hand_off_own_hub(void *arg)
{
    struct held_adopter *t = arg;
    if (!spin_until(&t->y_here))
        return (void *)-1;
    struct coop_greenlet *sleeper = unit_spawn(sleep_on_this_hub, t);
    while (!atomic_load(&t->asleep))
        coop_yield();
    struct coop_hub *x = coop_self()->hub;      /* nothing from here on switches: it stays */
    /* Unless a thief took the sleeper or this greenlet meanwhile (then only a note). */
    t->set_up = t->slept_on == x && x != t->y && !atomic_load(&t->woke) && !coop_sched_is_away(x);
    if (t->set_up) {
        struct coop_hub *before = atomic_exchange(&x->adopter, t->y), *stale = t->y;
        t->set_up = coop_sched_hand_off(x, AWAY_UNPREEMPTIBLE);
        if (!t->set_up)        /* away meanwhile (the monitor's): as it was */
            atomic_compare_exchange_strong(&x->adopter, &stale, before);
        t->woke_in_time = t->set_up && spin_until(&t->woke);
        coop_sched_returned(x);
    }
    atomic_store(&t->done, 1);
    unit_join(sleeper);
    return NULL;
}

START_TEST(test_handoff_taken_from_a_held_adopter)
{
    if (hubs() < 2)
        return;
    struct held_adopter t = { 0 };
    struct coop_greenlet *y = unit_spawn(hold_as_adopter, &t);     /* the monitor starts as configured */
    coop_monitor_init(0, 0, coop_settings.handoff_ms);
    struct coop_greenlet *x = unit_spawn(hand_off_own_hub, &t);
    void *x_result = unit_join(x), *y_result = unit_join(y);
    coop_monitor_init(coop_settings.max_blocking_ms, coop_settings.preempt_ms, coop_settings.handoff_ms);
    if (!t.set_up)
        fprintf(stderr, "test_handoff_taken_from_a_held_adopter: a thief moved the sleeper or its hub's holder: not tried\n");
    ck_assert_msg(!t.set_up || t.woke_in_time, "the sleep on the handed-off hub never ended");
    ck_assert_ptr_null(x_result);
    ck_assert_ptr_null(y_result);
}
END_TEST

static _Atomic int ticking_done;

static void *tick(void *unused)
{
    while (!atomic_load(&ticking_done))
        coop_sleep_until(coop_now() + MS(1));
    return unused;
}

/* One end of a socketpair over which two greenlets bounce a byte, each waiting for it
 * (coop_wait_fd) until the other end shuts down; the one that takes the byte once the
 * round is over shuts down instead of sending it back. */
struct bouncer { int fd; bool serves; int err; };

static void *bounce(void *arg)
{
    struct bouncer *b = arg;
    char c = 'x';
    if (b->serves && write(b->fd, &c, 1) != 1)
        return (void *)-1;
    for (;;) {
        ssize_t n = read(b->fd, &c, 1);
        if (n == 0)
            return NULL;
        if (n < 0 && errno != EAGAIN) {
            b->err = errno;
            return (void *)-1;
        }
        if (n < 0) {
            int r = coop_wait_fd(b->fd, COOP_READ, coop_now() + GIVE_UP);
            b->err = r;
            if (r != 0)
                return (void *)-1;
        } else if (atomic_load(&ticking_done) || write(b->fd, &c, 1) != 1) {
            shutdown(b->fd, SHUT_WR);
            return NULL;
        }
    }
}

/* Spares start while every hub blocks and retire once the hubs are back, round after round,
 * while a greenlet sleeps a millisecond at a time, so that its deadlines land in spares'
 * heaps too: a spare that retired with deadlines nobody adopted would leave it asleep for
 * good. (The interleaving that once did so, a spare woken and retiring again before its
 * waker cleared its away flag, is rare here; test_mariadb under ASan met it.) Meanwhile two
 * greenlets bounce a byte over a socketpair made each round: its fds live in the set of
 * whichever hub first waits on them, a spare's too, and their events must keep reaching
 * the bouncers whichever hubs block, retire or come back (a lost wake: a wait that
 * reaches GIVE_UP). */
START_TEST(test_spares_retire_and_come_back)
{
    for (int round = 0; round < 10; round++) {
        atomic_store(&ticking_done, 0);
        struct coop_greenlet *ticker = unit_spawn(tick, NULL);
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        struct bouncer ends[2] = { { .fd = sv[0], .serves = true }, { .fd = sv[1] } };
        struct coop_greenlet *bouncers[2] = { unit_spawn(bounce, &ends[0]), unit_spawn(bounce, &ends[1]) };
        block_every_hub_once(false);
        coop_sleep_until(coop_now() + MS(30));     /* the monitor retires idle spares */
        atomic_store(&ticking_done, 1);
        unit_join(ticker);
        for (int i = 0; i < 2; i++) {
            void *r = unit_join(bouncers[i]);
            ck_assert_msg(r == NULL, "round %d, end %d: %s", round, i, strerror(ends[i].err));
            coop_fd_forget(sv[i]);      /* as the shim's close does */
            close(sv[i]);
        }
    }
}
END_TEST

/* Out of fds (or memory), a hub cannot be made: the monitor asks for a spare in the middle
 * of a program, which must not be aborted for it (it aborted under ulimit -v in
 * test_faults_threads). In a child, with room for none, one or two of the hub's three fds:
 * NULL with EMFILE, and no fd left behind. */
static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

static void create_hubs_without_fds(void *unused)
{
    (void)unused;
    struct rlimit old;
    if (getrlimit(RLIMIT_NOFILE, &old) != 0)
        _exit(2);
    int lowest = dup(0);
    if (lowest < 0 || close(lowest) != 0)
        _exit(2);
    for (int room = 0; room < 3; room++) {
        int before = open_fds();
        struct rlimit low = { .rlim_cur = (rlim_t)(lowest + room), .rlim_max = old.rlim_max };
        if (setrlimit(RLIMIT_NOFILE, &low) != 0)
            _exit(2);
        errno = 0;
        struct coop_hub *h = coop_hub_create(COOP_MAX_HUBS - 1, true);
        int err = errno;
        setrlimit(RLIMIT_NOFILE, &old);
        if (h != NULL || err != EMFILE)
            _exit(3);
        if (open_fds() != before)
            _exit(4);
    }
    _exit(coop_hub_create(COOP_MAX_HUBS - 1, true) != NULL ? 0 : 5);
}

START_TEST(test_hub_creation_fails_cleanly)
{
    int status = unit_run_child(create_hubs_without_fds, NULL, UNIT_CHILD_GUARD_MS, NULL, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %s %d",
                  WIFSIGNALED(status) ? "killed by signal" : "exit status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
END_TEST

/* glibc's malloc and stdio skip their locks while the control block says one thread
 * (tcbhead_t's multiple_threads, at %fs:0x18 on x86-64). */
static void *small_multithreaded_probe(void *unused)
{
    (void)unused;
    int multiple_threads;
    __asm__("movl %%fs:0x18, %0" : "=r"(multiple_threads));
    return (void *)(intptr_t)multiple_threads;
}

START_TEST(test_greenlets_say_multithreaded)
{
    struct coop_greenlet *g = unit_spawn(small_multithreaded_probe, NULL);
    ck_assert_int_eq((int)(intptr_t)unit_join(g), 1);
}
END_TEST

/* ---- signals: one handed to a greenlet as it starts to wait ends that wait ---- */

enum { SIGNAL_ROUNDS = 20000 };

struct signal_race { struct coop_greenlet *waiter; _Atomic int armed, woken; int late; };

/* Each round sleeps for up to GIVE_UP: a signal lost in the race with the wait's start
 * (coop_suspend's check of signals_due against coop_signal_greenlet) leaves it asleep. */
static void *sleep_until_signalled(void *arg)
{
    struct signal_race *r = arg;
    for (int i = 1; i <= SIGNAL_ROUNDS; i++) {
        atomic_store(&r->armed, i);
        int64_t start = coop_now();
        int reason = coop_sleep_until(start + GIVE_UP);
        if (reason == 0)
            r->late++;                      /* the deadline ended it, not the signal */
        atomic_store(&r->woken, i);
    }
    return NULL;
}

static bool reached(_Atomic int *counter, int value)
{
    int64_t give_up = coop_now() + 2 * GIVE_UP;
    while (atomic_load(counter) < value && coop_now() < give_up)
        if (hubs() < 2)
            coop_yield();
    return atomic_load(counter) >= value;
}

static void *signal_each_round(void *arg)
{
    struct signal_race *r = arg;
    for (int i = 1; i <= SIGNAL_ROUNDS; i++) {
        if (!reached(&r->armed, i))
            return NULL;
        coop_signal_greenlet(r->waiter, false);
        if (!reached(&r->woken, i))
            return NULL;
    }
    return arg;
}

START_TEST(test_signal_as_the_wait_starts)
{
    struct signal_race r = { .late = 0 };
    r.waiter = unit_spawn(sleep_until_signalled, &r);
    struct coop_greenlet *signaller = unit_spawn(signal_each_round, &r);
    ck_assert_ptr_eq(unit_join(signaller), &r);
    unit_join(r.waiter);
    ck_assert_int_eq(r.late, 0);
}
END_TEST

/* ---- a nudge (pthread_cancel's) as the wait starts ends that wait ---- */

struct nudge_race { struct coop_greenlet *waiter; _Atomic int armed, requested, woken; int lost; };

static bool always(const void *unused) { (void)unused; return true; }

/* Each round looks at what was requested, as a cancellation point does, and parks for up
 * to GIVE_UP if nothing was: a nudge that came between the look and the wait, lost, leaves
 * it parked until then (coop_suspend's look at g->nudged). */
static void *park_until_nudged(void *arg)
{
    struct nudge_race *r = arg;
    for (int i = 1; i <= SIGNAL_ROUNDS; i++) {
        atomic_store(&r->armed, i);
        if (atomic_load(&r->requested) < i
            && coop_park(r, always, NULL, ~0u, coop_now() + GIVE_UP, "nudge race") == ETIMEDOUT)
            r->lost++;
        atomic_store(&r->woken, i);
    }
    return NULL;
}

static void *nudge_each_round(void *arg)
{
    struct nudge_race *r = arg;
    for (int i = 1; i <= SIGNAL_ROUNDS; i++) {
        if (!reached(&r->armed, i))
            return NULL;
        atomic_store(&r->requested, i);
        coop_nudge(r->waiter);
        if (!reached(&r->woken, i))
            return NULL;
    }
    return arg;
}

START_TEST(test_nudge_as_the_wait_starts)
{
    struct nudge_race r = { .lost = 0 };
    r.waiter = unit_spawn(park_until_nudged, &r);
    struct coop_greenlet *nudger = unit_spawn(nudge_each_round, &r);
    ck_assert_ptr_eq(unit_join(nudger), &r);
    unit_join(r.waiter);
    ck_assert_int_eq(r.lost, 0);
}
END_TEST

/* ---- a wait given up after a waker on another hub won it ---- */

struct lost_cancel { struct coop_greenlet *waiter; uint64_t gen; _Atomic int prepared, woken; bool cancelled; };

static void *prepare_then_cancel(void *arg)
{
    struct lost_cancel *c = arg;
    c->gen = coop_prepare_wait(coop_self(), WAIT_SLEEP, NULL);
    atomic_store(&c->prepared, 1);
    if (!spin_until(&c->woken))
        return NULL;
    c->cancelled = coop_cancel_wait(coop_self());      /* must leave: it is queued already */
    coop_after_wait(coop_self());
    for (int i = 0; i < 100; i++)        /* a second resume would come back into one of these */
        coop_yield();
    return arg;
}

static void *wake_prepared(void *arg)
{
    struct lost_cancel *c = arg;
    if (!spin_until(&c->prepared))
        return NULL;
    bool woken = coop_wake(c->waiter, c->gen, 0);
    atomic_store(&c->woken, 1);
    return woken ? arg : NULL;
}

/* The waker wins the wait word before the waiter gives the wait up: the waiter must not
 * run on beside its queue entry (resumed twice: "a finished greenlet was resumed"). */
START_TEST(test_cancel_after_a_wake_on_another_hub)
{
    if (hubs() < 2)
        return;
    for (int round = 0; round < 200; round++) {
        struct lost_cancel c = { .cancelled = true };
        c.waiter = unit_spawn(prepare_then_cancel, &c);
        struct coop_greenlet *waker = unit_spawn(wake_prepared, &c);
        ck_assert_ptr_eq(unit_join(waker), &c);
        ck_assert_ptr_eq(unit_join(c.waiter), &c);
        ck_assert(!c.cancelled);
    }
}
END_TEST

Suite *sched_suite(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = unit_tcase("sched");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_two_hubs_run_at_once);
    tcase_add_test(tc, test_steal_stress);
    tcase_add_test(tc, test_steal_while_both_run);
    tcase_add_test(tc, test_wake_stress);
    tcase_add_test(tc, test_kept_place_stress);
    tcase_add_test(tc, test_main_woken_from_other_hubs);
    tcase_add_test(tc, test_main_greenlet_runs_on_hub_0);
    tcase_add_test(tc, test_join_stress);
    tcase_add_test(tc, test_close_wakes_waiter_on_other_hub);
    tcase_add_test(tc, test_wait_away_from_the_fds_hub);
    tcase_add_test(tc, test_a_batch_of_fd_wakes_wakes_a_helper);
    tcase_add_test(tc, test_the_loop_counts_against_the_round);
    tcase_add_test(tc, test_offload_stress);
    tcase_add_test(tc, test_handoff_when_every_hub_blocks);
    tcase_add_test(tc, test_handoff_lets_the_main_greenlet_rescue);
    tcase_add_test(tc, test_handoff_without_free_fds);
    tcase_add_test(tc, test_a_wake_for_an_away_hub_is_taken_by_its_adopter);
    tcase_add_test(tc, test_handoff_of_hubs_held_by_unpreemptible_greenlets);
    tcase_add_test(tc, test_handoff_taken_from_a_held_adopter);
    tcase_add_test(tc, test_spares_retire_and_come_back);
    tcase_add_test(tc, test_hub_creation_fails_cleanly);
    tcase_add_test(tc, test_greenlets_say_multithreaded);
    tcase_add_test(tc, test_signal_as_the_wait_starts);
    tcase_add_test(tc, test_nudge_as_the_wait_starts);
    tcase_add_test(tc, test_cancel_after_a_wake_on_another_hub);
    suite_add_tcase(s, tc);
    return s;
}
