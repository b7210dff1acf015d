/*
 * Family thread, cancellation and thread exit. Every greenlet has glibc's own thread
 * control block (core/tls.c), so glibc's cancellation works on a greenlet as on a thread:
 * pthread_setcancelstate, pthread_setcanceltype and pthread_testcancel need no wrapper, and
 * pthread_exit and an acted-on cancellation unwind the stack with glibc's forced unwind,
 * which runs C++ destructors and cleanup handlers, then jumps to the thread's outermost
 * cancellation buffer. A created greenlet starts in start_cancellable, which registers that
 * buffer as glibc's start_thread does. A thread's original context (its main greenlet) has
 * glibc's own, in __libc_start_call_main or start_thread, where landing would end the OS
 * thread with every greenlet on it: that buffer is redirected to end only the greenlet.
 *
 * pthread_cancel marks the target as glibc's pthread_cancel does and, if it waits, wakes it
 * as a spurious wakeup: it looks again and acts at the cancellation point it waits in.
 * coop's own waits call shim_cancel_point; glibc's wrappers that coop retries after a wake
 * (read, recv, poll, wait4...) act by themselves.
 */
#include <pthread.h>
#include <setjmp.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

/* glibc's x86-64 __jmp_buf: rbx, rbp, r12-r15, rsp, pc; rbp, rsp and pc are mangled. */
enum { JB_RSP = 6, JB_PC = 7 };

/* How the greenlet running this code is ending: pthread_exit's value, or cancellation. */
static __thread bool exit_called;
static __thread void *exit_value;

static void *unwound_result(void) { return exit_called ? exit_value : PTHREAD_CANCELED; }

/* The thread's cancellation buffers are gone with the frames that held them. */
static void forget_buffers(void) { *coop_greenlet_unwind_chain(coop_self()) = NULL; }

static void stop_cancellation(struct coop_greenlet *g)
{
    atomic_fetch_or(coop_greenlet_cancel_state(g), COOP_CANCEL_EXITING);
}

/* glibc's start_thread in short: the outermost cancellation buffer of a new thread. */
static void *start_cancellable(void *(*fn)(void *), void *arg)
{
    __pthread_unwind_buf_t buf;
    if (__sigsetjmp_cancel(buf.__cancel_jmp_buf, 0) != 0) {
        forget_buffers();
        return unwound_result();
    }
    __pthread_register_cancel(&buf);
    void *result = fn(arg);
    __pthread_unregister_cancel(&buf);
    /* Key destructors run after this, with no buffer to land in: a cancellation that
     * arrived too late is not acted on there. */
    stop_cancellation(coop_self());
    return result;
}

/* --- a thread's original context: its buffer lands here instead --- */

static uintptr_t pointer_guard;

static uintptr_t mangle(uintptr_t p)
{
    p ^= pointer_guard;
    return p << 17 | p >> 47;
}

static uintptr_t demangle(uintptr_t p) { return (p >> 17 | p << 47) ^ pointer_guard; }

void shim_main_unwound(void) __attribute__((noreturn, used));
void shim_main_unwound(void)
{
    forget_buffers();
    /* The initial thread's record is glibc's only one of the OS thread 0, which goes on as
     * hub 0: glibc's setuid broadcast skips a record marked exiting. */
    atomic_fetch_and(coop_greenlet_cancel_state(coop_self()), ~COOP_CANCEL_EXITING);
    coop_exit(unwound_result());
}

/* Where the redirected buffer jumps, on the stack pointer it saved (16-byte aligned, as at
 * a call): a frame for shim_main_unwound, and the end of the call chain for unwinders. */
void shim_main_landing(void) __attribute__((used));
__asm__(".text\n"
        ".type shim_main_landing, @function\n"
        "shim_main_landing:\n"
        "\t.cfi_startproc\n"
        "\t.cfi_undefined rip\n"
        "\tendbr64\n"
        "\tcall shim_main_unwound\n"
        "\tud2\n"
        "\t.cfi_endproc\n"
        ".size shim_main_landing, .-shim_main_landing\n");

/* Checks once that a jmp_buf saved here demangles to this frame and this function. */
static __attribute__((noinline)) bool mangling_understood(void)
{
    __pthread_unwind_buf_t probe;
    char *frame = __builtin_frame_address(0);
    if (__sigsetjmp_cancel(probe.__cancel_jmp_buf, 0) != 0)
        return false;    /* never: nothing jumps to it */
    uintptr_t sp = demangle((uintptr_t)probe.__cancel_jmp_buf[0].__cancel_jmp_buf[JB_RSP]);
    uintptr_t pc = demangle((uintptr_t)probe.__cancel_jmp_buf[0].__cancel_jmp_buf[JB_PC]);
    return sp < (uintptr_t)frame && sp > (uintptr_t)frame - 4096
           && pc > (uintptr_t)mangling_understood && pc < (uintptr_t)mangling_understood + 4096;
}

/* Whether jmp_bufs read as this file reads them, found out on first use. */
static bool mangling_known(void)
{
    static int understood = -1;
    if (understood < 0) {
        pointer_guard = coop_tls_pointer_guard();
        understood = mangling_understood();
    }
    return understood;
}

uintptr_t shim_jmp_sp(const struct __jmp_buf_tag *env)
{
    return mangling_known() ? demangle((uintptr_t)env->__jmpbuf[JB_RSP]) : 0;
}

/* The outermost buffer of g's chain (g: a thread's original context), pointed at
 * shim_main_landing; false where it cannot be, and g then cannot be unwound. */
static bool redirect_outermost(struct coop_greenlet *g)
{
    __pthread_unwind_buf_t *buf = *coop_greenlet_unwind_chain(g);
    if (!mangling_known() || buf == NULL)
        return false;
    while (buf->__pad[0] != NULL)     /* priv.data.prev */
        buf = buf->__pad[0];
    buf->__cancel_jmp_buf[0].__cancel_jmp_buf[JB_PC] = (long)mangle((uintptr_t)shim_main_landing);
    return true;
}

/* Whether g may be unwound: a created greenlet always, a thread's original context once its
 * outermost buffer lands in coop. */
static bool unwindable(struct coop_greenlet *g)
{
    return !coop_greenlet_is_main(g) || redirect_outermost(g);
}

/* --- the calls --- */

void shim_cancel_point(void)
{
    if (coop_self() != NULL)
        pthread_testcancel();
}

/* The calling greenlet's cancellation word: each greenlet's own TLS keeps its address. */
static __thread _Atomic int *my_cancel_state;

void shim_async_cancel_point(void)
{
    struct coop_greenlet *g = coop_self();
    if (g == NULL)
        return;
    if (my_cancel_state == NULL)
        my_cancel_state = coop_greenlet_cancel_state(g);
    int mask = COOP_CANCEL_DISABLED | COOP_CANCEL_ASYNC | COOP_CANCELED | COOP_CANCEL_EXITING;
    if ((atomic_load_explicit(my_cancel_state, memory_order_relaxed) & mask) == (COOP_CANCEL_ASYNC | COOP_CANCELED))
        pthread_testcancel();
}

EXPORT void pthread_exit(void *result)
{
    struct coop_greenlet *g = shim_patched[FAM_thread] ? coop_self() : NULL;
    if (g != NULL) {
        if (!unwindable(g) || *coop_greenlet_unwind_chain(g) == NULL)
            coop_exit(result);       /* no buffer to land in: ends without unwinding */
        exit_value = result;
        exit_called = true;
    }
    REAL(pthread_exit)(result);
    __builtin_unreachable();
}

/* As glibc's: the target is marked canceled; where cancellation is enabled and the target
 * waits, it wakes to act on it; a thread that cancels itself asynchronously acts now. */
EXPORT int pthread_cancel(pthread_t t)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? 0 : REAL(pthread_cancel)(t);
    if (coop_greenlet_finished(g))
        return 0;
    if (!unwindable(g)) {
        coop_warn("pthread_cancel: this thread's original context cannot be unwound here "
                  "(the thread keeps running)");
        return ENOTSUP;
    }
    _Atomic int *state = coop_greenlet_cancel_state(g);
    int old = atomic_load(state), now;
    do {
        now = old | COOP_CANCELING | COOP_CANCELED;
        if (now == old)
            return 0;
    } while (!atomic_compare_exchange_weak(state, &old, now));
    if (now & (COOP_CANCEL_DISABLED | COOP_CANCEL_EXITING))
        return 0;
    if (g == coop_self())
        shim_async_cancel_point();
    else
        coop_nudge(g);
    return 0;
}

void shim_cancel_init(void) { coop_set_start_hook(start_cancellable); }
