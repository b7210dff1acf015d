// cancel_unwind: thread cancellation and pthread_exit in C++, one line per check:
//
//   ok NAME: what was seen       as with glibc's threads
//   FAIL NAME: why               not
//
// and exits 1 when a check failed. glibc ends a cancelled or exiting thread by unwinding its
// stack: every destructor of every frame runs, innermost first, the thread function's own
// frame included; a catch (...) sees abi::__forced_unwind and must rethrow it. The checks: a
// thread cancelled in read, in sleep (std::this_thread::sleep_for) and in
// std::condition_variable::wait (whose std::unique_lock then unlocks the mutex it took back);
// a std::thread cancelled through its native_handle; pthread_exit from a nested function.

#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cxxabi.h>
#include <mutex>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

#include "report.hh"

// What a victim did, in order; its objects' destructors write here too.
struct Trace {
    std::string steps;
    sem_t ready;
    Trace() { sem_init(&ready, 0, 0); }
    ~Trace() { sem_destroy(&ready); }
    void add(const std::string &step) { steps += steps.empty() ? step : "," + step; }
};

class Noted {
public:
    Noted(Trace &t, const char *name) : trace(t), name(name) {}
    ~Noted() { trace.add(std::string("~") + name); }
    Noted(const Noted &) = delete;
    Noted &operator=(const Noted &) = delete;
private:
    Trace &trace;
    const char *name;
};

// ---- cancelled in read: destructors of every frame, the thread function's included ----
struct ReadVictim {
    Trace trace;
    int fds[2];
};

__attribute__((noinline)) void read_deep(ReadVictim &v)
{
    Noted inner(v.trace, "inner");
    char byte;
    sem_post(&v.trace.ready);
    if (read(v.fds[0], &byte, 1) >= 0)
        v.trace.add("read returned");
}

// The forced unwind carries no C++ object: catching abi::__forced_unwind by reference, the
// documented idiom, binds a null reference, which UBSan's null check reports (make test-asan).
__attribute__((no_sanitize("null"))) void *read_victim(void *arg)
{
    auto &v = *static_cast<ReadVictim *>(arg);
    Noted outer(v.trace, "outer");
    try {
        read_deep(v);
    } catch (abi::__forced_unwind &) {
        v.trace.add("forced_unwind");
        throw;
    }
    return nullptr;
}

void check_read()
{
    ReadVictim v;
    if (pipe(v.fds) != 0)
        return report("cxx_cancel_read", false, "pipe failed");
    pthread_t t;
    pthread_create(&t, nullptr, read_victim, &v);
    sem_wait(&v.trace.ready);
    std::this_thread::sleep_for(20ms);
    pthread_cancel(t);
    void *value = nullptr;
    pthread_join(t, &value);
    close(v.fds[0]);
    close(v.fds[1]);
    std::string expect = "~inner,forced_unwind,~outer";
    bool ok = value == PTHREAD_CANCELED && v.trace.steps == expect;
    report("cxx_cancel_read", ok,
           ok ? "PTHREAD_CANCELED; " + v.trace.steps
              : std::string(value == PTHREAD_CANCELED ? "" : "not PTHREAD_CANCELED; ") + "did \""
                    + v.trace.steps + "\", expected \"" + expect + "\"");
}

// ---- a std::thread cancelled in sleep_for, through its native handle ----
void check_std_thread_sleep()
{
    Trace trace;
    std::thread t([&trace] {
        Noted guard(trace, "guard");
        sem_post(&trace.ready);
        std::this_thread::sleep_for(1000s);
        trace.add("slept");
    });
    sem_wait(&trace.ready);
    std::this_thread::sleep_for(20ms);
    pthread_cancel(t.native_handle());
    t.join();
    report("cxx_cancel_sleep", trace.steps == "~guard", "destructors: \"" + trace.steps + "\"");
}

// ---- cancelled in condition_variable::wait: the unique_lock unlocks a mutex it holds ----
void check_condition_variable()
{
    Trace trace;
    std::mutex m;
    std::condition_variable cv;
    bool never = false;
    std::thread t([&] {
        std::unique_lock<std::mutex> lock(m);
        Noted guard(trace, "guard");
        sem_post(&trace.ready);
        cv.wait(lock, [&] { return never; });
        trace.add("woke");
    });
    sem_wait(&trace.ready);
    { std::lock_guard<std::mutex> waiting(m); }   // only once the victim waits
    pthread_cancel(t.native_handle());
    t.join();
    bool relocked = m.try_lock();
    if (relocked)
        m.unlock();
    bool ok = trace.steps == "~guard" && relocked;
    report("cxx_cancel_cond_wait", ok,
           "destructors: \"" + trace.steps + "\", mutex " + (relocked ? "free" : "still held") + " after");
}

// ---- pthread_exit from a nested function ----
__attribute__((noinline)) void exit_deep(Trace &trace)
{
    Noted inner(trace, "inner");
    pthread_exit(reinterpret_cast<void *>(42));
}

void *exit_victim(void *arg)
{
    auto &trace = *static_cast<Trace *>(arg);
    Noted outer(trace, "outer");
    exit_deep(trace);
    trace.add("pthread_exit returned");
    return nullptr;
}

void check_exit()
{
    Trace trace;
    pthread_t t;
    pthread_create(&t, nullptr, exit_victim, &trace);
    void *value = nullptr;
    pthread_join(t, &value);
    bool ok = value == reinterpret_cast<void *>(42) && trace.steps == "~inner,~outer";
    report("cxx_exit", ok, "value " + std::to_string(reinterpret_cast<long>(value)) + ", destructors \""
                               + trace.steps + "\"");
}

} // namespace

int main()
{
    check_read();
    check_std_thread_sleep();
    check_condition_variable();
    check_exit();
    std::printf("%s\n", failures == 0 ? "cancel_unwind: all checks passed" : "cancel_unwind: checks failed");
    return failures == 0 ? 0 : 1;
}
