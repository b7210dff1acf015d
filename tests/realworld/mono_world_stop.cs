// Mono's collector stopping the world beside threads that compute: two threads add in loops
// without calls, a producer and a consumer pass 100,000 items through Monitor.Wait and
// Monitor.Pulse, eight tasks of the thread pool allocate 20,000 arrays each, and main collects
// 20 times meanwhile. Every Mono thread has a signal stack of its own (test_mono.sh).
using System;
using System.Threading;
using System.Threading.Tasks;

class MonoWorldStop
{
    static volatile bool stop;
    static readonly object gate = new object();
    static int queued, consumed;

    static void Main()
    {
        var computers = new Thread[2];
        for (int i = 0; i < computers.Length; i++) {
            computers[i] = new Thread(() => { long sum = 0; while (!stop) sum++; });
            computers[i].Start();
        }
        var consumer = new Thread(() => {
            for (int n = 0; n < 100000; n++)
                lock (gate) {
                    while (queued == 0)
                        Monitor.Wait(gate);
                    queued--;
                    consumed++;
                }
        });
        consumer.Start();
        for (int n = 0; n < 100000; n++)
            lock (gate) {
                queued++;
                Monitor.Pulse(gate);
            }
        long allocated = 0;
        var tasks = new Task[8];
        for (int t = 0; t < tasks.Length; t++)
            tasks[t] = Task.Run(() => {
                long length = 0;
                for (int j = 0; j < 20000; j++)
                    length += new int[64 + j % 100].Length;
                Interlocked.Add(ref allocated, length);
            });
        for (int g = 0; g < 20; g++)
            GC.Collect();
        Task.WaitAll(tasks);
        consumer.Join();
        stop = true;
        foreach (var c in computers)
            c.Join();
        Console.WriteLine("consumed " + consumed + " items, allocated " + allocated + " ints in 8 tasks, 20 collections asked");
    }
}
