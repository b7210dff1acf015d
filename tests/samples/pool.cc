// pool: the C++ standard library's threads, one line per check:
//
//   ok NAME: what was seen       as with the library's own threads
//   FAIL NAME: why               not
//   time: NAME MS                a duration (tests ignore these lines)
//   os_threads: K of N sleepers  on how many OS threads (distinct gettid) the N sleepers,
//                                all alive at once, ran (tests check it apart)
//
// and exits 1 when a check failed. The checks: a std::thread pool on std::mutex and
// std::condition_variable running 10,000 tasks; std::async futures; 50 threads in
// std::this_thread::sleep_for at the same time; std::atomic<int>::wait/notify_one ping-pong
// (libstdc++ makes that a futex system call of its own, not a pthread call) and notify_all;
// std::jthread with std::stop_token, std::stop_callback and condition_variable_any; a
// timed condition_variable::wait_for (steady clock: pthread_cond_clockwait) and
// std::timed_mutex::try_lock_for. With arguments, it runs only the checks they name
// (pool jthread timed_waits).

// GCC 12 warns, wrongly, that a std::jthread "may be used uninitialized" when its stop_source
// is built in place (libstdc++'s stop_source() passes *this to _Stop_state_ref): a false
// positive of -Wmaybe-uninitialized with -O2, silenced for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <numeric>
#include <stop_token>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

#include "report.hh"

long long ms_since(Clock::time_point start)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// ---- A fixed pool of workers over one queue ----
class Pool {
public:
    explicit Pool(unsigned n)
    {
        for (unsigned i = 0; i < n; i++)
            workers_.emplace_back([this] { work(); });
    }
    ~Pool()
    {
        {
            std::lock_guard lock(mutex_);
            closing_ = true;
        }
        ready_.notify_all();
        for (auto &w : workers_)
            w.join();
    }
    void submit(std::function<void()> task)
    {
        {
            std::lock_guard lock(mutex_);
            queue_.push_back(std::move(task));
            pending_++;
        }
        ready_.notify_one();
    }
    void wait_idle()
    {
        std::unique_lock lock(mutex_);
        idle_.wait(lock, [this] { return pending_ == 0; });
    }

private:
    void work()
    {
        for (;;) {
            std::function<void()> task;
            {
                std::unique_lock lock(mutex_);
                ready_.wait(lock, [this] { return closing_ || !queue_.empty(); });
                if (queue_.empty())
                    return;
                task = std::move(queue_.front());
                queue_.pop_front();
            }
            task();
            std::lock_guard lock(mutex_);
            if (--pending_ == 0)
                idle_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable ready_, idle_;
    std::deque<std::function<void()>> queue_;
    long pending_ = 0;
    bool closing_ = false;
    std::vector<std::thread> workers_;
};

void check_pool()
{
    constexpr int tasks = 10000, workers = 8;
    std::mutex sum_mutex;
    long long sum = 0, expected = 0;
    std::atomic<int> ran{0};
    {
        Pool pool(workers);
        for (int i = 0; i < tasks; i++) {
            expected += static_cast<long long>(i) * i % 1000;
            pool.submit([i, &sum, &sum_mutex, &ran] {
                long long v = static_cast<long long>(i) * i % 1000;
                if (i % 100 == 0)
                    std::this_thread::yield();
                std::lock_guard lock(sum_mutex);
                sum += v;
                ran++;
            });
        }
        pool.wait_idle();
    }
    bool passed = ran == tasks && sum == expected;
    report("thread_pool", passed,
           passed ? std::to_string(workers) + " workers ran " + std::to_string(tasks) +
                        " tasks, sum " + std::to_string(sum)
                  : std::to_string(ran.load()) + " tasks ran, sum " + std::to_string(sum) +
                        ", expected " + std::to_string(expected));
}

// ---- std::async ----
void check_async()
{
    constexpr int parts = 100, per_part = 10000;
    std::vector<std::future<long long>> futures;
    for (int p = 0; p < parts; p++)
        futures.push_back(std::async(std::launch::async, [p] {
            long long s = 0;
            for (int i = p * per_part; i < (p + 1) * per_part; i++)
                s += i;
            return s;
        }));
    // a deferred one runs in the thread that asks for it
    auto deferred = std::async(std::launch::deferred, [] { return std::this_thread::get_id(); });
    long long total = 0;
    for (auto &f : futures)
        total += f.get();
    long long n = static_cast<long long>(parts) * per_part;
    bool same_thread = deferred.get() == std::this_thread::get_id();
    // a promise fulfilled by another thread after a wait
    std::promise<int> promise;
    auto answer = promise.get_future();
    std::atomic<bool> asked{false};
    std::thread setter([&promise, &asked] {
        asked.wait(false); // not before the first wait_for below has timed out
        std::this_thread::sleep_for(20ms);
        promise.set_value(42);
    });
    bool timed_out = answer.wait_for(1ms) == std::future_status::timeout;
    asked = true;
    asked.notify_one();
    int value = answer.get();
    setter.join();
    bool passed = total == n * (n - 1) / 2 && same_thread && timed_out && value == 42;
    report("async", passed,
           std::to_string(parts) + " futures summing to " + std::to_string(total) +
               (same_thread ? ", deferred in the caller" : ", deferred ELSEWHERE") +
               (timed_out ? ", wait_for timeout" : ", NO wait_for timeout") +
               ", promise " + std::to_string(value));
}

// ---- sleep_for in 50 threads at once ----
// Each sleeper counts itself in, then sleeps until all have: were the sleeps not
// overlapping, the last could never count in (the test's time-out guards against the hang).
void check_sleep_for()
{
    constexpr int sleepers = 50;
    constexpr auto nap = 200ms;
    std::atomic<int> short_naps{0}, in{0};
    std::vector<pid_t> tids(sleepers);
    {
        std::vector<std::thread> threads;
        for (int i = 0; i < sleepers; i++)
            threads.emplace_back([&, i] {
                tids[i] = gettid();
                in++;
                do {
                    auto t0 = Clock::now();
                    std::this_thread::sleep_for(nap);
                    if (Clock::now() - t0 < nap)
                        short_naps++;
                } while (in < sleepers);
            });
        for (auto &t : threads)
            t.join();
    }
    std::sort(tids.begin(), tids.end());
    std::printf("os_threads: %td of %d sleepers\n", std::unique(tids.begin(), tids.end()) - tids.begin(),
                sleepers);
    bool passed = short_naps == 0;
    report("sleep_for", passed,
           passed ? std::to_string(sleepers) + " threads slept 200 ms at a time, all at once"
                  : std::to_string(short_naps.load()) + " naps were short");
}

// ---- std::atomic wait/notify (futex) ----
void check_atomic_wait()
{
    constexpr int rounds = 10000;
    std::atomic<int> turn{0}; // 0: ping's turn, 1: pong's
    long pings = 0, pongs = 0;
    auto start = Clock::now();
    std::thread pong([&] {
        for (int r = 0; r < rounds; r++) {
            turn.wait(0); // until it is not 0
            pongs++;
            turn.store(0);
            turn.notify_one();
        }
    });
    for (int r = 0; r < rounds; r++) {
        turn.wait(1);
        pings++;
        turn.store(1);
        turn.notify_one();
    }
    turn.wait(1);
    pong.join();
    std::printf("time: atomic_wait_ping_pong %lld ms\n", ms_since(start));
    report("atomic_wait_notify_one", pings == rounds && pongs == rounds,
           std::to_string(pings) + " pings, " + std::to_string(pongs) + " pongs");

    // notify_all wakes every waiter
    constexpr int waiters = 20;
    std::atomic<int> flag{0}, woken{0}, started{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < waiters; i++)
        threads.emplace_back([&] {
            started++;
            flag.wait(0);
            woken++;
        });
    while (started.load() < waiters)
        std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(20ms); // let them reach the wait
    flag.store(1);
    flag.notify_all();
    for (auto &t : threads)
        t.join();
    report("atomic_wait_notify_all", woken == waiters,
           std::to_string(woken.load()) + " of " + std::to_string(waiters) + " waiters woken");
}

// ---- std::jthread and stop tokens ----
void check_jthread()
{
    std::atomic<long> spins{0};
    std::atomic<bool> callback_ran{false};
    bool saw_stop = false;
    {
        std::jthread worker([&](std::stop_token st) {
            std::stop_callback cb(st, [&] { callback_ran = true; });
            while (!st.stop_requested()) {
                spins++;
                std::this_thread::sleep_for(1ms);
            }
            saw_stop = true;
        });
        while (spins == 0) // it has run, whatever the machine's load
            std::this_thread::sleep_for(1ms);
        worker.request_stop();
    } // joins
    // condition_variable_any::wait with a stop token returns false when stopped
    std::mutex m;
    std::condition_variable_any cv;
    bool pred_result = true, stopped_wait = false;
    {
        std::jthread waiter([&](std::stop_token st) {
            std::unique_lock lock(m);
            pred_result = cv.wait(lock, st, [] { return false; });
            stopped_wait = st.stop_requested();
        });
        std::this_thread::sleep_for(20ms);
    } // request_stop, then join
    bool passed = saw_stop && callback_ran && spins > 0 && !pred_result && stopped_wait;
    report("jthread", passed,
           std::string(saw_stop ? "stopped" : "NOT stopped") +
               (callback_ran ? ", stop_callback ran" : ", stop_callback DID NOT run") +
               (!pred_result && stopped_wait ? ", condition_variable_any wait ended by stop"
                                             : ", condition_variable_any wait NOT stopped"));
}

// ---- timed waits: condition_variable::wait_for, timed_mutex::try_lock_for ----
void check_timed()
{
    std::mutex m;
    std::condition_variable cv;
    std::unique_lock lock(m);
    auto start = Clock::now();
    // with a predicate that stays false: no spurious wakeup can end it early
    auto status = cv.wait_for(lock, 100ms, [] { return false; }) ? std::cv_status::no_timeout
                                                                   : std::cv_status::timeout;
    long long cv_ms = ms_since(start);
    lock.unlock();

    std::timed_mutex tm;
    std::atomic<bool> held{false}, release{false};
    std::thread holder([&] {
        tm.lock();
        held = true;
        while (!release)
            std::this_thread::sleep_for(1ms);
        tm.unlock();
    });
    while (!held)
        std::this_thread::sleep_for(1ms);
    start = Clock::now();
    bool got = tm.try_lock_for(100ms);
    long long tm_ms = ms_since(start);
    release = true;
    holder.join();
    if (got)
        tm.unlock();
    std::printf("time: cv_wait_for %lld ms, try_lock_for %lld ms\n", cv_ms, tm_ms);
    bool passed = status == std::cv_status::timeout && cv_ms >= 100 && !got && tm_ms >= 100;
    report("timed_waits", passed,
           std::string(status == std::cv_status::timeout ? "wait_for timeout" : "wait_for NO timeout") +
               (got ? ", try_lock_for LOCKED a held mutex" : ", try_lock_for false") +
               (cv_ms >= 100 && tm_ms >= 100 ? "" : ", ended EARLY"));
}

} // namespace

int main(int argc, char **argv)
{
    const std::vector<std::pair<std::string, void (*)()>> checks = {
        {"thread_pool", check_pool}, {"async", check_async},   {"sleep_for", check_sleep_for},
        {"atomic_wait", check_atomic_wait}, {"jthread", check_jthread}, {"timed_waits", check_timed},
    };
    std::vector<std::string> only(argv + 1, argv + argc); // empty: every check
    for (const auto &name : only)
        if (std::none_of(checks.begin(), checks.end(), [&](auto &c) { return c.first == name; })) {
            std::fprintf(stderr, "pool: no check named '%s'\n", name.c_str());
            return 2;
        }
    auto start = Clock::now();
    for (const auto &[name, run] : checks)
        if (only.empty() || std::find(only.begin(), only.end(), name) != only.end())
            run();
    std::printf("time: total %lld ms\n", ms_since(start));
    std::printf("%s\n", failures == 0 ? "pool: all checks passed" : "pool: checks failed");
    return failures == 0 ? 0 : 1;
}
