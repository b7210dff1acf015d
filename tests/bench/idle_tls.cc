// idle_tls [-n THREADS]: the memory of idle threads of a C++ program whose threads each have a
// 16 KiB thread_local array (in the executable's static TLS). As idle.c does with pthreads:
// starts THREADS std::threads that each write one byte of their array (the rest they leave
// untouched, as a page a thread never touches need not be resident) and wait on one
// std::condition_variable, waits until every one is parked and measures the resident set; then
// wakes them all and joins them. Prints:
//   bench=idle_tls threads=N rss_per_thread_kib=X rss_kib=Y rss_before_kib=Z
//         create_ns_per_thread=C wake_join_ns_per_thread=W
#include "bench.h"

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t TLS_ARRAY_BYTES = 16 * 1024;
thread_local char tls_array[TLS_ARRAY_BYTES];

std::mutex lock;
std::condition_variable go_cond, parked_cond;
long parked, woken, expected;
bool go;

void waiter(long index)
{
    tls_array[0] = static_cast<char>(index);
    std::unique_lock<std::mutex> guard(lock);
    if (++parked == expected)
        parked_cond.notify_one();
    go_cond.wait(guard, [] { return go; });
    woken += tls_array[0] == static_cast<char>(index);
}

}  // namespace

int main(int argc, char **argv)
{
    long n = bench_parse_threads(argc, argv);

    expected = n;
    raise_limit(RLIMIT_NPROC);
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(n));
    // The vector's memory counts in the baseline, not per thread.
    threads.resize(static_cast<std::size_t>(n));

    long rss_before = rss_kib();
    uint64_t start = now_ns();
    for (long i = 0; i < n; i++)
        threads[static_cast<std::size_t>(i)] = std::thread(waiter, i);
    {
        std::unique_lock<std::mutex> guard(lock);
        parked_cond.wait(guard, [] { return parked == expected; });
    }
    uint64_t created_ns = now_ns() - start;
    long rss_parked = rss_kib();

    uint64_t wake_start = now_ns();
    {
        std::lock_guard<std::mutex> guard(lock);
        go = true;
    }
    go_cond.notify_all();
    for (auto &t : threads)
        t.join();
    uint64_t wake_ns = now_ns() - wake_start;
    if (woken != n)
        die("%ld of %ld threads woke up and found their thread_local value", woken, n);
    bench_report_idle("idle_tls", n, rss_before, rss_parked, created_ns, wake_ns);
    return 0;
}
