/*
 * Time-slice preemption: a greenlet that keeps its hub for longer than COOP_PREEMPT_MS while
 * other greenlets exist is switched out and requeued, as Go (1.14 on) preempts a goroutine
 * that has run for 10 ms, so that a thread that spins, polls or computes without making a
 * blocking call cannot starve the others of its hub.
 *
 * WHO DOES WHAT
 *   The monitor thread (monitor.c) sees a hub's switch counter stand still for a whole
 *   slice, with the hub's thread on a CPU and more than one greenlet alive, and calls
 *   coop_preempt_ask: it records the switch count it saw and sends SIGURG to the hub's
 *   thread. Everything else happens on that thread, in the handler, which runs on the
 *   interrupted greenlet's stack and TLS: it checks that the greenlet is still the one the
 *   monitor saw and that switching there is safe, and if so requeues it through
 *   coop_requeue_current, the function coop_yield uses, behind the greenlets the hub's next
 *   poll makes ready. The switch happens inside the handler. When the greenlet is resumed,
 *   the switch returns into the handler, the handler returns, and sigreturn restores the
 *   interrupted state from the signal frame, which stayed on the greenlet's own stack.
 *
 * THE SAFE-POINT RULE
 *   Native code holds locks coop cannot see: glibc's internal ones (malloc's arenas, stdio,
 *   the loader's), libunwind's, the sanitizer runtime's, coop's and libuv's own. Their
 *   waiters block the OS thread, so a greenlet switched out holding one deadlocks the hub
 *   as soon as another greenlet of it wants the same lock. Locks a program takes through
 *   pthread (its own, libstdc++'s, libgcc's object mutex) are coop's and park greenlets:
 *   no hazard. So coop preempts only where no frame of the interrupted stack is in a
 *   guarded module: coop itself (libuv is linked in), libc and the other glibc libraries,
 *   ld.so, libunwind, libgcc_s (the unwinder of C++ exceptions, which walks the loader's
 *   lists), the sanitizer runtimes and the replacement allocators (jemalloc, tcmalloc,
 *   mimalloc: their locks park greenlets, but the runtime's own threads allocate through
 *   them too, a hub's loop, the monitor starting a spare, and would wait for a greenlet
 *   switched out holding one). (liblzma, which libunwind calls for compressed debug
 *   sections, is not: it locks through pthread, and when libunwind calls it, libunwind's
 *   frames lie beyond; xz's workers compute in it.) Any frame, not only the innermost: glibc
 *   calls program code with its locks held (dl_iterate_phdr's callback holds the loader's,
 *   a stdio cookie function its FILE's), and so does coop (pthread_once routines, signal
 *   handlers behind its trampoline). The one exception is the thread's entry, the outermost
 *   frames, which call the thread's function holding nothing (__libc_start_main under
 *   _start, start_thread, coop_greenlet_main): a guarded frame is unsafe when a program
 *   frame other than the outermost lies beyond it. libm, libstdc++ and every other library
 *   are the program's. libc's clock reads (clock_gettime, gettimeofday, time) and the vDSO
 *   they call take no lock: a frame there is judged as its caller's, so that a loop of the
 *   program's that polls the clock is preempted there (it would otherwise be caught inside
 *   libc most of the time), and coop reading the clock with a lock of its own held is not
 *   (a greenlet whose own function is coop's, as in the unit tests, has no program frame
 *   beyond that would refuse it). Modules are classified at start-up; one loaded later
 *   with dlopen is the program's (glibc's NSS modules run only under libc's own, guarded,
 *   frames).
 *   The stack is unwound with libunwind from the signal frame. It is not preempted where it
 *   is deeper than MAX_FRAMES or where libunwind cannot unwind it: code without unwind
 *   information, such as a JIT's, unless libunwind's guess from the frame pointer (trusted,
 *   though a guess) leads back to frames with it; nor where the stack seems to end at such
 *   code (ends_stack). Nor is a greenlet that holds a FILE lock (the stdio hold hooks would
 *   have to run in the handler), one running a signal handler on an alternate signal
 *   stack, one whose stack has less than STACK_ROOM_NEEDED left below the handler, nor the
 *   hub. The innermost frame is looked at before anything is unwound: most refusals cost no
 *   unwinding, and libunwind is never entered from a handler that interrupted libunwind or
 *   the loader.
 *   Where it is not safe, the handler leaves a request in the greenlet's TLS
 *   (coop_preempt_wanted), and the greenlet's next interposed call takes it
 *   (coop_preempt_point, at the wrappers' entry), after applying the same rule to the
 *   frames beyond coop's own: a wrapper may be called from inside libc, or from a library
 *   constructor that dlopen runs with the loader's lock held. The monitor asks again in any
 *   case, 0.25 ms later, then twice as late each time up to its tick (monitor.c).
 *
 * SIGNAL-SAFETY OF A SWITCH INSIDE THE HANDLER
 *   - The interrupted state is the signal frame, on the greenlet's own stack, which nothing
 *     else uses while it is switched out. The kernel built the frame 128 bytes below the
 *     interrupted stack pointer, so the interrupted function's red zone is untouched.
 *   - Registers: all of them, with the x87, SSE and AVX state, are in the frame and come back
 *     with sigreturn. The switch is a function call made by the handler, which keeps what
 *     the ABI asks of a call (callee-saved registers, MXCSR, the x87 control word): the
 *     kernel gave the handler a default FPU state, which is what the switch keeps for it,
 *     while each other greenlet runs with its own.
 *   - The signal mask: while the handler runs the kernel blocks its signal (and, behind the
 *     shim's trampoline, the program handler's sa_mask). Before it switches away, the
 *     handler sets the mask the thread had when the signal came (saved in the frame), so
 *     that every greenlet switched to from inside it runs with exactly the thread's mask and
 *     can be preempted in its turn. (Not SA_NODEFER: a signal that arrives during the
 *     decision would then nest in it.) sigreturn puts back the mask and the alternate
 *     signal stack saved in the frame, which other greenlets may have changed on this thread
 *     since: the resumed handler first writes the thread's current ones into the frame, so
 *     that sigreturn changes neither.
 *   - errno is saved and restored by the handler; the switch keeps each greenlet's own.
 *   - TLS: the handler runs on the greenlet's thread pointer; the switch moves it to the next
 *     greenlet's and back (wrfsbase or arch_prctl, both fine in a handler); sigreturn does
 *     not touch it. Its hub (coop_thread.hub) is right in every greenlet's area at every
 *     moment: the switch writes it into the next greenlet's area before it moves the thread
 *     pointer there, so the handler always clears the flag of the hub whose signal it took
 *     (read from a greenlet that last ran elsewhere, a flag was left set for ever and that
 *     hub never preempted again). The rest it trusts only once it knows that the greenlet
 *     whose TLS it runs on is the hub's current one: a signal that lands in the middle of a
 *     switch (coop's code: refused anyway) may see the next one's.
 *   - Sanitizers: the switch announces the stacks to ASan as every switch does; the
 *     sanitizer runtime's frames are guarded.
 *   - System calls: the monitor signals only a thread it saw on a CPU, and the handler has
 *     SA_RESTART; still, a signal that lands just as the thread enters a blocking call coop
 *     left to the kernel, one the kernel never restarts (a sleep, a poll), makes that call
 *     fail with EINTR, as Go's preemption signal does. A loop that polls with a zero
 *     timeout is in such a call much of the time: the shim makes those calls again.
 *   - libunwind in the handler: warmed up before the monitor first starts, when the list of
 *     guarded modules is made and the handler installed (it takes locks and reads ELF files
 *     on first use); a program with one greenlet never gets any of them. While it runs,
 *     coop_running is NULL, so that the interposed calls it makes (its cache's pthread
 *     mutex, reads of its validation pipe) go straight to libc instead of parking the
 *     greenlet inside the handler.
 *
 * THE SIGNAL is SIGURG, as Go's, for Go's reason: its default action is to ignore it. A
 *   signal the monitor sent just as the greenlet called execve stays pending into the new
 *   program, whose handlers are reset: a real-time signal would kill it before its first
 *   instruction, SIGURG does nothing. Programs rarely use SIGURG (urgent data on a socket
 *   with an owner, F_SETOWN). One that installs a handler for it keeps it: the shim's
 *   trampoline offers every SIGURG to coop_preempt_on_signal first, which takes the
 *   monitor's (the one flagged as on its way to that hub) and leaves any other to the
 *   program's handler. (A program's SIGURG that comes while the monitor's is on its way
 *   merges with it, as standard signals do not queue, and is taken for the monitor's.)
 *   While the program leaves SIGURG at SIG_DFL or SIG_IGN, coop's handler stands in,
 *   ignoring every SIGURG but the monitor's, as either would; sigaction reports the
 *   program's own setting. SIGURG is one of the runtime's signals: the shim blocks it in
 *   a hub thread's real mask only while every greenlet blocks it (their masks are kept in
 *   user space; hubs_mask is the shim's record of what the hubs' masks block), and then
 *   the monitor sends none: the program could read it from a signalfd, and nothing is
 *   preempted. (One sent just before, which the program reads instead, leaves that hub's
 *   flag set until a SIGURG reaches the hub's handler again, as a thread that blocks it
 *   would.) A program's SIGURG that a hub whose mask is stale takes goes back to the
 *   process (leave_pending). With the signal family off (--no-signal) a handler the
 *   program installs replaces coop's: it gets the monitor's SIGURGs, and nothing is
 *   preempted.
 *
 * GREENLETS WITH A SIGNAL STACK OF THEIR OWN. An alternate signal stack is per OS thread in
 *   the kernel, and so per greenlet here: one that a greenlet sets up (the shim's
 *   sigaltstack) is lent to whichever hub's thread runs it, at each switch to it, and the
 *   thread's kept one (diag.c's, for overflow reports) comes back at the next switch to a
 *   greenlet without one, so that no thread keeps a stack that its greenlet has left, or
 *   freed as it ended (Ruby gives each thread one, and frees it with the thread).
 *   The kernel pushes a signal's frame at the interrupted stack pointer unless the handler
 *   has SA_ONSTACK and the thread a signal stack. A program that gives its threads signal
 *   stacks may run code whose stack pointer is not on a C stack at all: the BEAM's JIT runs
 *   Erlang code on each Erlang process's small stack, and a frame pushed there overwrites
 *   that process's heap (the BEAM crashed under coop within a second; it defines sigaction
 *   itself, to give every handler SA_ONSTACK, so coop cannot tell from the handlers which
 *   programs need it). SA_ONSTACK would not do for coop's handlers: a greenlet without a
 *   signal stack of its own runs on its thread's kept one, shared with the others, from
 *   which no switch may happen. So a greenlet with a signal stack of its own is kept from
 *   coop's interrupting signals instead: while it runs, its thread's real mask blocks them
 *   (the shim's full masks include them, coop_preempt_held_signals). It is not preempted
 *   (nor are Ruby's threads, or Python's main thread under faulthandler, which set one up
 *   for their fault handlers), and the monitor's report says why. A signal the monitor sent
 *   meanwhile stays pending in the kernel until the thread runs another greenlet, where it
 *   is stale. The lending and the hold are the hub's thread's own state, changed at its
 *   switches before the stack pointer moves to the next context (the kernel refuses to
 *   change the signal stack of a thread that runs on it), or, around a handler that waits
 *   (below), by the context that arrives; the monitor reads interrupts_held for its
 *   reports.
 *   A handler with SA_ONSTACK runs on the installed stack: the greenlet's own, or for one
 *   without, the hub's kept one. One that waits there (a garbage collector's suspend handler
 *   waits in sigsuspend) leaves its frames on it while other greenlets run on the thread, and
 *   the kernel neither changes the signal stack of a thread that runs on it nor keeps a
 *   stack the thread has left from the next signal, whose frame, at the stack's top, would
 *   overwrite them (three greenlets stopped in turn on one hub: SIGSEGV in most runs). So a
 *   switch that leaves from the installed stack (coop_preempt_on_installed_stack) blocks every
 *   signal on the thread and lends nothing; the context switched to, off that stack, lends
 *   its own and puts the mask back first thing (arrive: coop_preempt_lend_after_switch). A
 *   kept stack left so becomes the waiting greenlet's own (taken_stacks: written by that
 *   greenlet's switches; given back, free for a hub to keep again, at a switch where it runs
 *   on none of them, or at its release), and the hub keeps another (kept_stacks). The
 *   switch back to a greenlet that waits so on a stack of its own blocks every signal too
 *   (waits_on_signal_stack) and the greenlet lends its stack in arrive, from its frames
 *   there: lent before the switch, while the thread still runs on the context it leaves, a
 *   signal delivered then would put its frame at the stack's top, over the waiting ones.
 *   The kernel takes it in arrive: it refuses only a thread on the stack installed before. Its lend_after_switch and mask_after are the hub thread's own,
 *   written by the context that leaves and read by the one that arrives.
 *
 * INVARIANTS ACROSS OS THREADS (the monitor thread and each hub's thread)
 *   - The monitor sends a signal only after turning signal_on_its_way from false to true,
 *     and the hub's handler turns it back only once it has decided, before it switches away.
 *     So at most one of the monitor's signals per hub is pending or being handled (a thread
 *     that blocks the signal keeps one pending for ever, and the monitor's report says so).
 *   - prepared is set, with release order, once the handler is installed, by the thread that
 *     starts the monitor; the shim's sigaction, on any thread, re-installs coop's handler
 *     only after reading it set.
 *   - The handler preempts only if the hub's switch count still equals asked_at. Only the
 *     hub's thread writes that counter, and every switch adds one, so the count names the
 *     greenlet the monitor saw: a signal that arrives after that greenlet left (a stale one)
 *     does nothing, and a greenlet that has just started its slice is never cut short by its
 *     predecessor's signal. A request left for the next interposed call carries the same
 *     count.
 *   - The refusal record is written by the hub's thread alone, refused_at last with release
 *     order, and read by the monitor for its reports: a report may pair one attempt's reason
 *     with a later attempt's instruction, but never with another episode's.
 *   - The guarded ranges are written once, before the handler is installed and before the
 *     monitor thread exists, and only read afterwards. Counters are atomics.
 *   - The preempted greenlet is requeued on its own hub's thread, by the function coop_yield
 *     uses: the rule holds whatever scheduler stands behind that function.
 *
 * THE DEFAULT SLICE, 10 ms, is Go's. Shorter slices cost more and longer ones make the others
 * wait longer: a greenlet that never yields holds its hub for a slice plus at most half of
 * one (the monitor's tick), the order of an OS scheduler's time slice, and a spin-wait costs
 * up to a slice. Measured on this project's 2-CPU VM (perf, a hog beside a sleeper): the
 * handler, libunwind included, takes about 0.2% of the hog's time at 10 ms; the monitor's
 * wakeups every 5 ms cost about 0.7% of the CPU an echo server uses (make bench), more than
 * any preemption does.
 */
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"
#include "unwind.h"

#define PREEMPT_SIGNAL COOP_PREEMPT_SIGNAL
#define STACK_ROOM_NEEDED COOP_PREEMPT_STACK_ROOM
#define MAX_FRAMES 256
#define GUARDED_RANGES_MAX 48
#define LOCK_FREE_MAX 8

enum refusal {
    PREEMPTIBLE,
    REFUSED_STALE,           /* the greenlet left its hub before the signal came */
    REFUSED_RUNTIME,         /* the hub's thread was between greenlets, in coop's code */
    REFUSED_GUARDED_FRAME,   /* a frame in a guarded module: refusal_at */
    REFUSED_FILE_LOCK,
    REFUSED_ALTSTACK,
    REFUSED_STACK_ROOM,
    REFUSED_UNWIND,          /* libunwind could not go on past refusal_at */
    REFUSED_DEPTH,
};

static int64_t slice_ns;

/* Executable ranges of the modules whose frames make a stack unsafe (see the rule). */
static struct guarded_range {
    uintptr_t lo, hi;
    char module[32];
    bool coop;               /* coop's own code: a wrapper's frames, at an interposed call */
} guarded[GUARDED_RANGES_MAX];
static int guarded_len;

/* The modules glibc, the unwinders, the sanitizers and the replacement allocators are made
 * of, by file name (see the rule). */
static const char *const guarded_prefixes[] = {
    "libc.so.", "ld-linux", "libpthread.so.", "libdl.so.", "librt.so.", "libresolv.so.",
    "libanl.so.", "libutil.so.", "libnss_", "libunwind", "libgcc_s.so.",
    "libasan.so.", "libubsan.so.", "liblsan.so.", "libtsan.so.",
    "libjemalloc", "libtcmalloc", "libmimalloc",
};

/* Functions of guarded modules that take no lock and call nothing but the vDSO. */
static const char *const lock_free_names[] = { "clock_gettime", "gettimeofday", "time" };
static struct { uintptr_t lo, hi; } lock_free[LOCK_FREE_MAX];
static int lock_free_len;

__thread uint64_t coop_preempt_wanted;
__thread unsigned coop_preempt_signals_taken;     /* the handler runs on the greenlet's TLS */

static _Atomic uint64_t preempted_by_signal, preempted_at_call, refusals;
static void (*preempt_hook)(struct coop_greenlet *g, bool at_call);

void coop_set_preempt_hook(void (*hook)(struct coop_greenlet *g, bool at_call)) { preempt_hook = hook; }

uint64_t coop_preemptions(void) { return atomic_load(&preempted_by_signal) + atomic_load(&preempted_at_call); }

uint64_t coop_preempt_refusals(void) { return atomic_load(&refusals); }

/* --- the modules --- */

static const char *file_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static bool guarded_by_name(const char *path)
{
    const char *name = file_name(path);
    for (size_t i = 0; i < sizeof guarded_prefixes / sizeof guarded_prefixes[0]; i++)
        if (strncmp(name, guarded_prefixes[i], strlen(guarded_prefixes[i])) == 0)
            return true;
    return false;
}

static bool holds_address(const struct dl_phdr_info *info, uintptr_t address)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && address - lo < ph->p_memsz)
            return true;
    }
    return false;
}

static void add_guarded(uintptr_t lo, uintptr_t hi, bool coop, const char *module)
{
    if (guarded_len == GUARDED_RANGES_MAX)
        return;
    struct guarded_range *r = &guarded[guarded_len++];
    r->lo = lo;
    r->hi = hi;
    r->coop = coop;
    snprintf(r->module, sizeof r->module, "%s", module);
}

/* dl_iterate_phdr's callback: the executable segments of a module guarded by its name (coop's
 * own code is added first, as coop_in_runtime knows it). */
static int collect_guarded(struct dl_phdr_info *info, size_t size, void *unused)
{
    (void)size, (void)unused;
    if (!guarded_by_name(info->dlpi_name))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            add_guarded(info->dlpi_addr + ph->p_vaddr, info->dlpi_addr + ph->p_vaddr + ph->p_memsz, false,
                        file_name(info->dlpi_name));
    }
    return 0;
}

static void add_lock_free(uintptr_t lo, uintptr_t hi)
{
    if (lock_free_len < LOCK_FREE_MAX) {
        lock_free[lock_free_len].lo = lo;
        lock_free[lock_free_len++].hi = hi;
    }
}

/* dl_iterate_phdr's callback: the vDSO's code (the module holding its ELF header). */
static int collect_vdso(struct dl_phdr_info *info, size_t size, void *unused)
{
    (void)size, (void)unused;
    uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (vdso == 0 || !holds_address(info, vdso))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            add_lock_free(info->dlpi_addr + ph->p_vaddr, info->dlpi_addr + ph->p_vaddr + ph->p_memsz);
    }
    return 1;
}

/* Where the lock-free functions are: the vDSO, and the clock reads' extent in libc itself
 * (the first definition may be another's: the sanitizer runtime intercepts clock_gettime). */
static void collect_lock_free(void)
{
    dl_iterate_phdr(collect_vdso, NULL);
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    size_t names = sizeof lock_free_names / sizeof lock_free_names[0];
    for (size_t i = 0; libc != NULL && i < names; i++) {
        void *fn = dlsym(libc, lock_free_names[i]);
        Dl_info info;
        const ElfW(Sym) *sym = NULL;
        if (fn != NULL && dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym != NULL && sym->st_size != 0)
            add_lock_free((uintptr_t)info.dli_saddr, (uintptr_t)info.dli_saddr + sym->st_size);
    }
    if (libc != NULL)
        dlclose(libc);
}

static bool lock_free_at(uintptr_t ip)
{
    for (int i = 0; i < lock_free_len; i++)
        if (ip - lock_free[i].lo < lock_free[i].hi - lock_free[i].lo)
            return true;
    return false;
}

/* The guarded module ip is in; NULL for the program's code and for the lock-free functions,
 * which walk() judges as their callers. */
static const struct guarded_range *guarded_range_of(uintptr_t ip)
{
    if (lock_free_at(ip))
        return NULL;
    for (int i = 0; i < guarded_len; i++)
        if (ip - guarded[i].lo < guarded[i].hi - guarded[i].lo)
            return &guarded[i];
    return NULL;
}

/* --- the rule --- */

/* What does not depend on the frames. */
static enum refusal judge_greenlet(const struct coop_greenlet *g)
{
    if (g->held != NULL)
        return REFUSED_FILE_LOCK;
    stack_t altstack;
    if (coop_sys(SYS_sigaltstack, NULL, &altstack, 0) == 0 && (altstack.ss_flags & SS_ONSTACK))
        return REFUSED_ALTSTACK;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0), base = (uintptr_t)g->stack.base;
    if (sp - base < g->stack.size && sp - base < STACK_ROOM_NEEDED)
        return REFUSED_STACK_ROOM;
    return PREEMPTIBLE;
}

/*
 * libunwind says a stack ends (step returns 0) where the last frame's unwind information
 * leaves the return address undefined, as at every thread's entry (_start, clone's,
 * coop_context_entry). It says so too where a frame has no unwind information and its guess
 * from the frame pointer finds the register 0 or pointing nowhere near: code built without
 * frame pointers uses it for data, and the frames beyond, unknown, may be guarded. So an end
 * counts only at a frame that has unwind information, or one reached through the unwind
 * information of the inner frame (the one stepped from; 0 at the innermost). That takes
 * code without any, where such a chain leads, for the start of a coroutine library's stack
 * (makecontext's return address is the first byte of glibc's __start_context, before which
 * no function is found; Boost.Context's trampoline has none): an assumption, wrong for a
 * JIT's code without frame pointers that called a function with unwind information.
 */
static bool ends_stack(const struct coop_unwind *unw, uintptr_t at, uintptr_t inner)
{
    unw_proc_info_t info;
    return unw->get_proc_info_by_ip(unw->local_addr_space, at, &info, NULL) == 0
           || (inner != 0 && unw->get_proc_info_by_ip(unw->local_addr_space, inner, &info, NULL) == 0);
}

/*
 * Applies the rule to the frames from the cursor outward. exact_first: the first frame's
 * address is the interrupted instruction (a signal frame), not a return address, which
 * points one past its call. skip_coop: the innermost frames are coop's own (a wrapper's),
 * which the rule does not count; the first frame beyond them is then the wrapper's caller.
 * Innermost frames in the lock-free functions do not count either: the first frame beyond
 * them is judged as if it had been interrupted. An interrupted instruction in guarded code
 * is refused, but the walk goes on: a guarded frame further out (qsort's, under a comparator
 * that called clock_gettime) is the lasting reason, and the one the blocking monitor names.
 */
static enum refusal walk(const struct coop_unwind *unw, unw_cursor_t *cursor, bool exact_first, bool skip_coop,
                         uintptr_t *where)
{
    uintptr_t innermost = 0;  /* the innermost frame counted, when it is guarded */
    uintptr_t beyond = 0;     /* the first guarded frame since the last program frame */
    bool first = true;
    enum refusal why = REFUSED_DEPTH;
    uintptr_t at = 0, inner;  /* this frame's address, and the last one's (ends_stack) */
    for (int depth = 0; depth < MAX_FRAMES; depth++) {
        unw_word_t ip;
        if (unw->get_reg(cursor, UNW_REG_IP, &ip) < 0) {
            why = REFUSED_UNWIND;
            break;
        }
        inner = at;
        at = depth == 0 && exact_first ? ip : ip - 1;
        const struct guarded_range *r = guarded_range_of(at);
        int more = unw->step(cursor);
        *where = at;
        if ((skip_coop && r != NULL && r->coop) || (first && lock_free_at(at))) {
            if (more <= 0) {
                why = REFUSED_UNWIND;
                break;
            }
            continue;
        }
        skip_coop = false;
        if (r != NULL && first)
            innermost = at;
        else if (r != NULL && beyond == 0)
            beyond = at;
        /* A program frame beyond a guarded one: unsafe, unless it is the thread's entry. */
        if (r == NULL && beyond != 0 && more != 0) {
            *where = beyond;
            return REFUSED_GUARDED_FRAME;
        }
        first = false;
        if (more <= 0) {
            why = more == 0 && ends_stack(unw, at, inner) ? PREEMPTIBLE : REFUSED_UNWIND;
            break;
        }
    }
    if (innermost != 0) {
        *where = innermost;
        return REFUSED_GUARDED_FRAME;
    }
    return why;
}

static enum refusal walk_as_runtime(unw_context_t *context, bool signal_frame, uintptr_t *where)
{
    const struct coop_unwind *unw = coop_unwind(false);     /* loaded by coop_unwind_warm_up */
    if (unw == NULL)
        return REFUSED_UNWIND;
    unw_cursor_t cursor;
    struct coop_unwind_window window = coop_unwind_begin();
    enum refusal why = REFUSED_UNWIND;
    if (unw->init_local2(&cursor, context, signal_frame ? UNW_INIT_SIGNAL_FRAME : 0) == 0)
        why = walk(unw, &cursor, signal_frame, !signal_frame, where);
    coop_unwind_end(window);
    return why;
}

static bool in_coop(uintptr_t where)
{
    const struct guarded_range *r = guarded_range_of(where);
    return r != NULL && r->coop;
}

/* Only the hub's own thread records (the handler, or the greenlet at a call). A refusal
 * inside coop's own wrapper is a moment's (the greenlet yields at that wrapper's end): it
 * does not replace a lasting reason found earlier in the same episode, which the blocking
 * monitor's report names. */
static void record_refusal(struct coop_hub *h, enum refusal why, uintptr_t where, uint64_t asked_at)
{
    atomic_fetch_add_explicit(&refusals, 1, memory_order_relaxed);
    if (why == REFUSED_GUARDED_FRAME && in_coop(where)
        && atomic_load_explicit(&h->preempt.refused_at, memory_order_relaxed) == asked_at + 1
        && !in_coop(atomic_load_explicit(&h->preempt.refusal_at, memory_order_relaxed)))
        return;
    atomic_store_explicit(&h->preempt.refusal, why, memory_order_relaxed);
    atomic_store_explicit(&h->preempt.refusal_at, where, memory_order_relaxed);
    atomic_store_explicit(&h->preempt.refused_at, asked_at + 1, memory_order_release);
}

/* The trace's instant and the hook run here even in the handler: the rule has just found no
 * frame of coop's on the interrupted stack, so no trace record was in progress. */
static void leave(struct coop_greenlet *g, bool at_call)
{
    atomic_fetch_add_explicit(at_call ? &preempted_at_call : &preempted_by_signal, 1, memory_order_relaxed);
    if (coop_trace_enabled())
        coop_trace_instant(g, COOP_TRACE_PREEMPTED, at_call);
    if (preempt_hook != NULL)
        preempt_hook(g, at_call);
    coop_requeue_current(true);
}

/* --- in the handler --- */

static enum refusal judge_interrupted(struct coop_hub *h, struct coop_greenlet *g, uint64_t asked_at,
                                      ucontext_t *uc, uintptr_t *where)
{
    if (atomic_load_explicit(&h->switches, memory_order_relaxed) != asked_at)
        return REFUSED_STALE;
    *where = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    if (g == NULL || g != coop_interrupted_greenlet())    /* a switch or a wait under way */
        return REFUSED_RUNTIME;
    enum refusal why = judge_greenlet(g);
    if (why != PREEMPTIBLE)
        return why;
    if (guarded_range_of(*where) != NULL)
        return REFUSED_GUARDED_FRAME;
    return walk_as_runtime((unw_context_t *)uc, true, where);
}

/* The kernel blocked the signal (and a program handler's sa_mask, behind the shim's
 * trampoline) while its handler runs; the greenlets that run from inside it get the mask the
 * thread had when the signal came. */
static void restore_interrupted_mask(const ucontext_t *uc)
{
    coop_sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&uc->uc_sigmask, 0, sizeof(uint64_t), 0, 0);
}

/* sigreturn restores the mask and alternate stack saved in the frame: the thread's current
 * ones, which other greenlets may have changed while this one was out, go there first. */
static void keep_thread_signal_state(ucontext_t *uc)
{
    coop_sys6(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)&uc->uc_sigmask, sizeof(uint64_t), 0, 0);
    coop_sys(SYS_sigaltstack, NULL, &uc->uc_stack, 0);
}

/* The shim's, set once at start-up where it keeps each greenlet's mask (the signal family). */
static const _Atomic uint64_t *hubs_mask;

void coop_preempt_watch_mask(const _Atomic uint64_t *mask) { hubs_mask = mask; }

/* What every greenlet blocks, and so do the hubs' threads. */
static uint64_t blocked_by_all(void) { return hubs_mask != NULL ? atomic_load(hubs_mask) : 0; }

static bool signal_blocked_by_all(void) { return blocked_by_all() & 1ULL << (PREEMPT_SIGNAL - 1); }

bool coop_preempt_on_signal(siginfo_t *info, void *context)
{
    (void)info;
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL || !atomic_load_explicit(&h->preempt.signal_on_its_way, memory_order_acquire))
        return false;        /* not the monitor's: the program's own SIGURG */
    int saved_errno = errno;
    coop_preempt_signals_taken++;
    {
        ucontext_t *uc = context;
        struct coop_greenlet *g = coop_running;
        uint64_t asked_at = atomic_load_explicit(&h->preempt.asked_at, memory_order_acquire);
        uintptr_t where = 0;
        enum refusal why = judge_interrupted(h, g, asked_at, uc, &where);
        atomic_store(&h->preempt.signal_on_its_way, false);
        if (why == PREEMPTIBLE) {
            restore_interrupted_mask(uc);
            leave(g, false);
            keep_thread_signal_state(uc);
        } else if (why != REFUSED_STALE) {
            record_refusal(h, why, where, asked_at);
            if (g != NULL && g == h->current)
                coop_preempt_wanted = asked_at + 1;
        }
    }
    errno = saved_errno;
    return true;
}

/* A program's SIGURG that every greenlet blocks, landed on a hub whose real mask the
 * shim has not brought up to date yet: natively it would stay pending, for a signalfd or
 * sigwait to take. It goes back to the process, and this thread blocks it from the
 * handler's return on (it is blocked during the handler, so it cannot come back here);
 * each stale hub passes it on at most once (as SI_QUEUE from another hub than the first:
 * coop_queue_again). */
static void leave_pending(siginfo_t *info, ucontext_t *uc)
{
    sigaddset(&uc->uc_sigmask, PREEMPT_SIGNAL);
    coop_queue_again(getpid(), 0, (pid_t)coop_sys(SYS_gettid, 0, 0, 0), info);
}

static void on_preempt_signal(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    if (!coop_preempt_on_signal(info, context) && coop_thread.hub != NULL && signal_blocked_by_all())
        leave_pending(info, context);
}

bool coop_is_preempt_handler(const void *handler) { return handler == (const void *)on_preempt_signal; }

static _Atomic bool prepared;      /* the handler may be installed: see coop_preempt_prepare */

static void install_handler(void)
{
    struct sigaction sa = { .sa_sigaction = on_preempt_signal, .sa_flags = SA_SIGINFO | SA_RESTART };
    sigemptyset(&sa.sa_mask);
    coop_settings.os_sigaction(PREEMPT_SIGNAL, &sa, NULL);
}

bool coop_preempt_claim_signal(void)
{
    if (!atomic_load_explicit(&prepared, memory_order_acquire))
        return false;
    install_handler();
    return true;
}

/* --- at an interposed call --- */

__attribute__((noinline)) void coop_preempt_at_call(void)
{
    struct coop_greenlet *g = coop_running;
    if (g == NULL)
        return;              /* the runtime is unwinding a stack: the request waits */
    uint64_t wanted = coop_preempt_wanted;
    coop_preempt_wanted = 0;
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL || g != h->current || atomic_load_explicit(&h->switches, memory_order_relaxed) + 1 != wanted)
        return;              /* it has left its hub since */
    int saved_errno = errno;
    uintptr_t where = 0;
    enum refusal why = judge_greenlet(g);
    if (why == PREEMPTIBLE) {
        ucontext_t context;     /* libunwind's unw_context_t on x86-64 */
        getcontext(&context);
        why = walk_as_runtime((unw_context_t *)&context, false, &where);
    }
    if (why == PREEMPTIBLE)
        leave(g, true);
    else
        record_refusal(h, why, where, wanted - 1);
    errno = saved_errno;
}

/* --- greenlets with a signal stack of their own --- */

static uint64_t interrupting;      /* written at start-up, before any greenlet runs */

void coop_add_interrupting_signal(int sig) { interrupting |= 1ULL << (sig - 1); }

/* Every stack a hub has kept: its first, and each one mapped since for a hub whose kept stack
 * a waiting handler took. An entry is written once, by the thread that claims its index, and
 * never removed, so that any thread may read the stacks (kept_by_a_hub); `free` says that a
 * mapped one is no greenlet's, for a hub to keep again (claimed by CAS). Past KEPT_STACKS_MAX a
 * hub keeps none (SS_DISABLE): a handler with SA_ONSTACK then runs where its greenlet runs, as
 * on a thread without a signal stack, and an overflow is not reported. */
#define KEPT_STACKS_MAX 256
static struct kept_stack {
    void *_Atomic sp;                /* set last, with release order */
    _Atomic bool free;
    bool ours;                       /* coop mapped it: it may be kept again once free */
} kept_stacks[KEPT_STACKS_MAX];
static _Atomic int kept_stacks_len;

static int record_kept_stack(void *sp, bool ours)
{
    int i = atomic_fetch_add(&kept_stacks_len, 1);
    if (i >= KEPT_STACKS_MAX)
        return -1;
    kept_stacks[i].ours = ours;
    atomic_store_explicit(&kept_stacks[i].sp, sp, memory_order_release);
    return i;
}

static int kept_stacks_count(void)
{
    int n = atomic_load(&kept_stacks_len);
    return n < KEPT_STACKS_MAX ? n : KEPT_STACKS_MAX;
}

void coop_preempt_keep_signal_stack(struct coop_hub *h, bool ours)
{
    struct coop_signal_stacks *s = &h->signal_stacks;
    coop_sys(SYS_sigaltstack, NULL, &s->kept, 0);
    s->kept_index = s->kept.ss_flags & SS_DISABLE ? -1 : record_kept_stack(s->kept.ss_sp, ours);
    s->installed = s->kept.ss_sp;
}

void *coop_map_signal_stack(void)
{
    long p = coop_sys6(SYS_mmap, 0, COOP_SIGNAL_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p < 0 && p > -4096 ? NULL : (void *)p;
}

/* A kept stack for h in place of the one a handler took: a free one of coop's, else a new
 * mapping (system calls only: this runs in the switch of a handler that waits). */
static void keep_another(struct coop_signal_stacks *s)
{
    int n = kept_stacks_count(), i;
    for (i = 0; i < n; i++) {
        bool was_free = true;
        if (kept_stacks[i].ours && atomic_compare_exchange_strong(&kept_stacks[i].free, &was_free, false))
            break;
    }
    void *sp = i < n ? atomic_load_explicit(&kept_stacks[i].sp, memory_order_acquire) : coop_map_signal_stack();
    if (i == n && sp != NULL && (i = record_kept_stack(sp, true)) < 0)
        coop_sys(SYS_munmap, sp, COOP_SIGNAL_STACK_SIZE, 0);
    s->kept_index = sp != NULL ? i : -1;
    s->kept = s->kept_index >= 0 ? (stack_t){ .ss_sp = sp, .ss_size = COOP_SIGNAL_STACK_SIZE }
                                 : (stack_t){ .ss_flags = SS_DISABLE };
}

static bool runs_on(uintptr_t sp, const void *base, size_t size) { return sp - (uintptr_t)base < size; }

void coop_preempt_drop_taken_stacks(struct coop_greenlet *g)
{
    for (int i = 0; i < 2; i++)
        if (g->taken_stacks[i] != 0)
            atomic_store(&kept_stacks[g->taken_stacks[i] - 1].free, true);
    g->taken_stacks[0] = g->taken_stacks[1] = 0;
}

/* A greenlet runs on a stack it took for as long as a handler of its that ran there has not
 * returned, and a handler nested in it runs on another such stack or on the one installed:
 * running on none of them, it has left them all. (Switching stacks inside a handler by hand,
 * a coroutine's, would keep one in use unseen; no handler that waits here does.) */
void coop_preempt_give_back_stacks(const struct coop_hub *h, struct coop_greenlet *self)
{
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    const stack_t *installed = coop_preempt_installed_stack(h, self);
    if (installed != NULL && runs_on(sp, installed->ss_sp, installed->ss_size))
        return;
    for (int i = 0; i < 2; i++)
        if (self->taken_stacks[i] != 0
            && runs_on(sp, atomic_load(&kept_stacks[self->taken_stacks[i] - 1].sp), COOP_SIGNAL_STACK_SIZE))
            return;
    coop_preempt_drop_taken_stacks(self);
}

void coop_preempt_lend_on_arrival(struct coop_hub *h, struct coop_greenlet *self, struct coop_greenlet *next,
                                  bool from_installed)
{
    struct coop_signal_stacks *s = &h->signal_stacks;
    uint64_t all = ~0ULL;
    coop_sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&s->mask_after, sizeof all, 0, 0);
    if (coop_switch_kind == COOP_SWITCH_UCONTEXT) {     /* swapcontext sets next's saved mask */
        memcpy(&s->mask_after, &next->ctx.uc_sigmask, sizeof s->mask_after);
        memcpy(&next->ctx.uc_sigmask, &all, sizeof all);
    }
    if (from_installed && s->installed == s->kept.ss_sp) {
        /* Its frames are on the hub's kept stack, which becomes its own (two at most are
         * remembered: a third, three handlers deep, is never kept again), and the hub keeps
         * another. */
        int slot = self->taken_stacks[0] == 0 ? 0 : self->taken_stacks[1] == 0 ? 1 : -1;
        if (slot >= 0 && s->kept_index >= 0)
            self->taken_stacks[slot] = (uint16_t)(s->kept_index + 1);
        keep_another(s);
    }
    s->lend_after_switch = true;
}

/* The flag first: a handler that runs between the two writes the frame's mask from it (the
 * shim's hub_mask). What every greenlet blocks (the shim's hubs_mask) stays blocked when the
 * hold ends. */
static void hold_interrupts(struct coop_hub *h, bool hold)
{
    atomic_store_explicit(&h->preempt.interrupts_held, hold, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    uint64_t bits = hold ? interrupting : interrupting & ~blocked_by_all();
    if (bits != 0)
        coop_sys6(SYS_rt_sigprocmask, hold ? SIG_BLOCK : SIG_UNBLOCK, (long)&bits, 0, sizeof bits, 0, 0);
}

/* Installs g's signal stack on h's thread, or the kept one. The kernel refuses while the
 * thread runs on the installed stack: one a program installed with a raw call, which coop's
 * record does not show (a handler parked on a stack coop knows is left through
 * coop_preempt_lend_on_arrival). Then the next switch on this thread tries again. */
static void install_stack_for(struct coop_signal_stacks *s, const struct coop_greenlet *g)
{
    const stack_t *wanted = g->own_sigaltstack ? &g->sigaltstack : &s->kept;
    if (wanted->ss_sp != s->installed && coop_sys(SYS_sigaltstack, wanted, NULL, 0) == 0)
        s->installed = wanted->ss_sp;
}

static void hold_for(struct coop_hub *h, const struct coop_greenlet *g)
{
    if (g->own_sigaltstack != atomic_load_explicit(&h->preempt.interrupts_held, memory_order_relaxed))
        hold_interrupts(h, g->own_sigaltstack);
}

void coop_preempt_lend_signal_stack(struct coop_hub *h, const struct coop_greenlet *next)
{
    install_stack_for(&h->signal_stacks, next);
    hold_for(h, next);
}

void coop_preempt_lend_after_switch(struct coop_hub *h, const struct coop_greenlet *self)
{
    struct coop_signal_stacks *s = &h->signal_stacks;
    s->lend_after_switch = false;
    install_stack_for(s, self);
    coop_sys6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&s->mask_after, 0, sizeof s->mask_after, 0, 0);
    hold_for(h, self);
}

/* A hub's kept stack, now or before, which sigaltstack reports to a greenlet without one of
 * its own: one that sets it back (as Python's faulthandler does as it ends) sets up none. */
static bool kept_by_a_hub(const void *sp)
{
    for (int i = 0, n = kept_stacks_count(); i < n; i++)
        if (atomic_load_explicit(&kept_stacks[i].sp, memory_order_acquire) == sp)
            return true;
    return false;
}

void coop_preempt_saved_mask_for(const struct coop_hub *h, struct coop_greenlet *next)
{
    if (hubs_mask == NULL) {     /* no shim keeps masks: the thread's is the program's own */
        coop_sys6(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)&next->ctx.uc_sigmask, sizeof(uint64_t), 0, 0);
        return;
    }
    uint64_t mask = blocked_by_all();
    if (atomic_load_explicit(&h->preempt.interrupts_held, memory_order_relaxed))
        mask |= interrupting;
    memcpy(&next->ctx.uc_sigmask, &mask, sizeof mask);
}

/* The kernel's change and coop's record of it are made with every signal blocked: a signal
 * taken between them (a kick as glibc's call returned) ran its handler on the new stack
 * while coop still took the old one for installed, and a handler that waited there (a stop
 * of the world's) left its frames where the thread's next signals were pushed, the kernel's
 * stack and coop's apart for good (SIGSEGV; found by reading, after a rare crash of make
 * test). The hold comes after the mask is back, as it is a change to that mask; a signal
 * the kernel sends this thread meanwhile runs its handler in coop's code, and one that
 * parked there could move the greenlet before the lend (a narrower window, still open). */
int coop_preempt_set_signal_stack(const stack_t *ss, stack_t *old)
{
    const stack_t wanted = ss != NULL ? *ss : (stack_t){ 0 };    /* old may be ss */
    sigset_t mask;
    coop_block_all_signals(&mask);
    long r = coop_sys(SYS_sigaltstack, ss, old, 0);
    struct coop_greenlet *g = coop_running;
    struct coop_hub *h = coop_thread.hub;
    bool recorded = r == 0 && ss != NULL && g != NULL && h != NULL && g == h->current;
    if (recorded) {
        bool enabled = !(wanted.ss_flags & SS_DISABLE);
        g->own_sigaltstack = enabled && !kept_by_a_hub(wanted.ss_sp);
        g->sigaltstack = wanted;
        h->signal_stacks.installed = enabled ? wanted.ss_sp : NULL;
    }
    coop_restore_signals(&mask);
    if (recorded)
        coop_preempt_lend_signal_stack(h, g);
    return r < 0 ? (int)-r : 0;
}

uint64_t coop_preempt_held_signals(void)
{
    struct coop_hub *h = coop_thread.hub;
    return h != NULL && atomic_load_explicit(&h->preempt.interrupts_held, memory_order_relaxed) ? interrupting : 0;
}

/* --- the monitor's side --- */

void coop_preempt_ask(struct coop_hub *h, uint64_t switches)
{
    if (signal_blocked_by_all())
        return;
    bool idle = false;
    if (!atomic_compare_exchange_strong(&h->preempt.signal_on_its_way, &idle, true))
        return;
    atomic_store_explicit(&h->preempt.asked_at, switches, memory_order_release);
    if (coop_sys(SYS_tgkill, getpid(), h->tid, PREEMPT_SIGNAL) != 0)
        atomic_store(&h->preempt.signal_on_its_way, false);
}

/* Whether the hub's thread blocks the preemption signal (its SigBlk in /proc). */
static bool signal_blocked(pid_t tid)
{
    static const char key[] = "\nSigBlk:";
    char status[4096];
    const char *line = coop_read_task_file(tid, "status", status, sizeof status) ? strstr(status, key) : NULL;
    return line != NULL && (strtoull(line + strlen(key), NULL, 16) & (1ULL << (PREEMPT_SIGNAL - 1)));
}

/* "libc.so.6 (qsort+0x2f)", or "libc.so.6+0x3cbf3" inside a function dladdr cannot name. */
static bool describe_instruction(uintptr_t at, char *out, size_t size)
{
    const struct guarded_range *r = guarded_range_of(at);
    Dl_info info;
    bool in_module = dladdr((void *)at, &info);
    if (!in_module)
        snprintf(out, size, "%s at 0x%lx", r ? r->module : "code", (unsigned long)at);
    else if (info.dli_sname != NULL)
        snprintf(out, size, "%s (%s+0x%lx)", r ? r->module : file_name(info.dli_fname), info.dli_sname,
                 (unsigned long)(at - (uintptr_t)info.dli_saddr));
    else
        snprintf(out, size, "%s+0x%lx", r ? r->module : file_name(info.dli_fname),
                 (unsigned long)(at - (uintptr_t)info.dli_fbase));
    return in_module;
}

bool coop_preempt_refused(struct coop_hub *h, uint64_t switches)
{
    return atomic_load_explicit(&h->preempt.interrupts_held, memory_order_relaxed) || signal_blocked_by_all()
           || atomic_load_explicit(&h->preempt.refused_at, memory_order_acquire) == switches + 1;
}

bool coop_preempt_why_not(struct coop_hub *h, uint64_t switches, char *why, size_t size)
{
    if (atomic_load_explicit(&h->preempt.interrupts_held, memory_order_relaxed)) {
        snprintf(why, size, "it has a signal stack of its own (sigaltstack), so its code may run where a "
                 "signal's frame cannot go: coop's signals wait while it runs");
        return true;
    }
    if (signal_blocked_by_all()) {
        snprintf(why, size, "every greenlet blocks the preemption signal (SIGURG), and so do the hubs' threads");
        return true;
    }
    /* An attempt's refusal first: SigBlk shows the signal blocked while its handler runs too. */
    if (atomic_load_explicit(&h->preempt.refused_at, memory_order_acquire) != switches + 1) {
        if (!signal_blocked(h->tid))
            return false;
        snprintf(why, size, "its thread blocks the preemption signal (SIGURG): the program blocked it with "
                 "sigprocmask or pthread_sigmask, or the hub has not yet switched since a greenlet unblocked it");
        return true;
    }
    enum refusal refusal = atomic_load_explicit(&h->preempt.refusal, memory_order_relaxed);
    char at[160];
    uintptr_t refusal_at = atomic_load_explicit(&h->preempt.refusal_at, memory_order_relaxed);
    bool in_module = describe_instruction(refusal_at, at, sizeof at);
    switch (refusal) {
    case REFUSED_GUARDED_FRAME:
        snprintf(why, size, "a frame of its stack is in %s, code that may hold locks whose waiters "
                 "block the hub's thread", at);
        break;
    case REFUSED_FILE_LOCK: snprintf(why, size, "it holds a FILE lock (flockfile)"); break;
    case REFUSED_ALTSTACK: snprintf(why, size, "it runs a signal handler on an alternate signal stack"); break;
    case REFUSED_STACK_ROOM:
        snprintf(why, size, "less than %d KiB of its stack is left for the preemption", STACK_ROOM_NEEDED / 1024);
        break;
    case REFUSED_UNWIND:
        /* Outside every module: a JIT's code, or a return address that the unwinder guessed
         * (from the frame pointer) past code without unwind information. */
        if (in_module)
            snprintf(why, size, "its stack cannot be unwound past %s (no unwind information?)", at);
        else
            snprintf(why, size, "its stack cannot be unwound past 0x%lx, in no loaded module (a JIT's "
                     "code, or a guess past code without unwind information)", (unsigned long)refusal_at);
        break;
    case REFUSED_DEPTH: snprintf(why, size, "its stack is deeper than %d frames", MAX_FRAMES); break;
    default: snprintf(why, size, "the hub's thread was in coop's own code"); break;
    }
    return true;
}

/* --- start-up, fork, statistics --- */

/* At start-up, before the shim reads the runtime's signals: the real mask of a hub's thread
 * blocks SIGURG only while every greenlet does (shim/signal.c). */
void coop_preempt_init(int preempt_ms)
{
    slice_ns = preempt_ms * 1000000LL;
    if (preempt_ms > 0) {
        coop_add_runtime_signal(PREEMPT_SIGNAL);
        coop_add_interrupting_signal(PREEMPT_SIGNAL);
    }
}

/* libunwind is loaded on first need (core/unwind.h): the warm-up loads it, then the list
 * of guarded modules is made, so that libunwind and its liblzma are on it whoever loaded
 * them first. A handler the program installed for SIGURG (the shim's trampoline, which
 * passes the signal here first) stays; otherwise coop's own stands in for the program's
 * SIG_DFL or SIG_IGN, both of which ignore SIGURG, as coop's handler does every SIGURG but
 * its own. */
void coop_preempt_prepare(void)
{
    if (atomic_load_explicit(&prepared, memory_order_relaxed))
        return;
    coop_unwind_warm_up();
    uintptr_t coop_lo, coop_hi;
    coop_runtime_code(&coop_lo, &coop_hi);
    add_guarded(coop_lo, coop_hi, true, "coop");
    dl_iterate_phdr(collect_guarded, NULL);
    collect_lock_free();
    struct sigaction current;
    if (coop_settings.os_sigaction(PREEMPT_SIGNAL, NULL, &current) == 0
        && (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN))
        install_handler();
    atomic_store_explicit(&prepared, true, memory_order_release);
}

/* No signal is pending in a new process, and the parent's greenlets are gone. */
void coop_preempt_fork_child(struct coop_hub *h)
{
    atomic_store(&h->preempt.signal_on_its_way, false);
    atomic_store(&h->preempt.refused_at, 0);
    coop_preempt_wanted = 0;
}

void coop_preempt_print_stats(void)
{
    if (slice_ns == 0)
        return;
    uint64_t by_signal = atomic_load(&preempted_by_signal), at_call = atomic_load(&preempted_at_call);
    coop_log(COOP_LOG_ERROR,
             "stats: preemptions %lu (by signal %lu, at a later call %lu), attempts refused %lu, slice %.0f ms",
             (unsigned long)(by_signal + at_call), (unsigned long)by_signal, (unsigned long)at_call,
             (unsigned long)atomic_load(&refusals), (double)slice_ns / 1e6);
}
