// rust_threads: Rust's std threads, one line per check:
//
//   ok NAME: what was seen       as with the OS's threads
//   FAIL NAME: why               not
//   time: NAME MS                a duration (tests ignore these lines)
//   os_threads: K of N sleepers  on how many OS threads (distinct gettid) the N sleepers,
//                                all alive at once, ran (tests check it apart)
//
// and exits 1 when a check failed. Rust's std makes few pthread calls: spawn is
// pthread_create (with pthread_attr_setstacksize), join is pthread_join, names are
// pthread_setname_np; Mutex, Condvar, Once, OnceLock, thread parking and so mpsc channels wait
// with the futex system call itself, and sleep is nanosleep. The checks: spawn and join with
// values, Mutex and Condvar producer/consumer, Arc<AtomicUsize>, thread::sleep in 50 threads at
// once, Once and OnceLock, mpsc channels (bounded and unbounded), named threads, scoped threads,
// park/unpark, RwLock and Barrier, and a thread-per-connection TCP echo server on 127.0.0.1:0
// with 50 client threads of 100 messages each. With arguments, it runs only the checks they
// name (rust_threads channels tcp_echo).
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex, Once, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

struct Report {
    failures: usize,
    only: Vec<String>, // the checks named on the command line; empty: all
    known: Vec<&'static str>,
}

impl Report {
    fn check(&mut self, name: &'static str, run: fn() -> Result<String, String>) {
        self.known.push(name);
        if !self.only.is_empty() && !self.only.iter().any(|o| o == name) {
            return;
        }
        match run() {
            Ok(what) => println!("ok {}: {}", name, what),
            Err(why) => {
                println!("FAIL {}: {}", name, why);
                self.failures += 1;
            }
        }
    }
}

fn spawn_and_join() -> Result<String, String> {
    let handles: Vec<_> = (0..100u64).map(|i| thread::spawn(move || i * i)).collect();
    let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let expected: u64 = (0..100u64).map(|i| i * i).sum();
    // a panic in a thread comes back from join as an error
    let panicked = thread::Builder::new()
        .name("panicker".into())
        .spawn(|| -> u32 { std::panic::panic_any("expected panic") })
        .unwrap()
        .join()
        .is_err();
    if sum == expected && panicked {
        Ok(format!("100 threads returned values summing to {}, a panic reached join", sum))
    } else {
        Err(format!("sum {} (expected {}), panic seen by join: {}", sum, expected, panicked))
    }
}

fn mutex_condvar() -> Result<String, String> {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const ITEMS: usize = 5000; // per producer
    const CAPACITY: usize = 8;
    struct Queue {
        items: VecDeque<usize>,
        done_producers: usize,
    }
    let shared = Arc::new((
        Mutex::new(Queue { items: VecDeque::new(), done_producers: 0 }),
        Condvar::new(), // not empty (or all done)
        Condvar::new(), // not full
    ));
    let mut handles = Vec::new();
    for p in 0..PRODUCERS {
        let shared = Arc::clone(&shared);
        handles.push(thread::spawn(move || {
            let (lock, not_empty, not_full) = &*shared;
            for k in 0..ITEMS {
                let mut q = lock.lock().unwrap();
                while q.items.len() >= CAPACITY {
                    q = not_full.wait(q).unwrap();
                }
                q.items.push_back(p * ITEMS + k + 1);
                not_empty.notify_one();
            }
            lock.lock().unwrap().done_producers += 1;
            not_empty.notify_all();
            0usize
        }));
    }
    for _ in 0..CONSUMERS {
        let shared = Arc::clone(&shared);
        handles.push(thread::spawn(move || {
            let (lock, not_empty, not_full) = &*shared;
            let mut sum = 0usize;
            let mut q = lock.lock().unwrap();
            loop {
                if let Some(v) = q.items.pop_front() {
                    sum += v;
                    not_full.notify_one();
                } else if q.done_producers == PRODUCERS {
                    return sum;
                } else {
                    q = not_empty.wait(q).unwrap();
                }
            }
        }));
    }
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let n = PRODUCERS * ITEMS;
    // a timed wait that nobody signals ends by timing out
    let pair = (Mutex::new(()), Condvar::new());
    let start = Instant::now();
    // with a condition that stays true: no spurious wakeup can end it early
    let (_guard, timeout) = pair
        .1
        .wait_timeout_while(pair.0.lock().unwrap(), Duration::from_millis(50), |_| true)
        .unwrap();
    let waited = start.elapsed();
    if total == n * (n + 1) / 2 && timeout.timed_out() && waited >= Duration::from_millis(50) {
        Ok(format!("{} items summing to {}, wait_timeout timed out", n, total))
    } else {
        Err(format!("sum {} (expected {}), timed out {} after {:?}", total, n * (n + 1) / 2,
                    timeout.timed_out(), waited))
    }
}

fn atomics() -> Result<String, String> {
    let counter = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let c = Arc::clone(&counter);
            thread::spawn(move || {
                for i in 0..1000 {
                    c.fetch_add(1, Ordering::SeqCst);
                    if i % 100 == 0 {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n = counter.load(Ordering::SeqCst);
    if n == 50_000 && Arc::strong_count(&counter) == 1 {
        Ok(format!("50 threads counted to {}", n))
    } else {
        Err(format!("counted to {}, {} references left", n, Arc::strong_count(&counter)))
    }
}

extern "C" {
    fn gettid() -> i32; // glibc 2.30
}

// Each sleeper counts itself in, then sleeps until all have: were the sleeps not overlapping,
// the last could never count in (the test's time-out guards against the hang).
fn sleeps() -> Result<String, String> {
    const SLEEPERS: usize = 50;
    let arrived = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            let arrived = Arc::clone(&arrived);
            thread::spawn(move || {
                let tid = unsafe { gettid() };
                arrived.fetch_add(1, Ordering::SeqCst);
                let mut shortest = Duration::MAX;
                loop {
                    let t0 = Instant::now();
                    thread::sleep(Duration::from_millis(200));
                    shortest = shortest.min(t0.elapsed());
                    if arrived.load(Ordering::SeqCst) == SLEEPERS {
                        return (tid, shortest);
                    }
                }
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut tids: Vec<_> = results.iter().map(|r| r.0).collect();
    tids.sort();
    tids.dedup();
    println!("os_threads: {} of {} sleepers", tids.len(), SLEEPERS);
    let shortest = results.iter().map(|r| r.1).min().unwrap();
    if shortest >= Duration::from_millis(200) {
        Ok(format!("{} threads slept 200 ms at a time, all at once", SLEEPERS))
    } else {
        Err(format!("a sleep of 200 ms lasted {:?}", shortest))
    }
}

static ONCE: Once = Once::new();
static ONCE_RUNS: AtomicUsize = AtomicUsize::new(0);
static CELL: OnceLock<String> = OnceLock::new();
static CELL_INITS: AtomicUsize = AtomicUsize::new(0);

fn once() -> Result<String, String> {
    let handles: Vec<_> = (0..50)
        .map(|i| {
            thread::spawn(move || {
                ONCE.call_once(|| {
                    ONCE_RUNS.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(20)); // the others wait for this
                });
                let v = CELL.get_or_init(|| {
                    CELL_INITS.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(20));
                    format!("set by thread {}", i)
                });
                ONCE.is_completed() && v.starts_with("set by")
            })
        })
        .collect();
    let all_saw = handles.into_iter().all(|h| h.join().unwrap());
    let (runs, inits) = (ONCE_RUNS.load(Ordering::SeqCst), CELL_INITS.load(Ordering::SeqCst));
    if runs == 1 && inits == 1 && all_saw {
        Ok(format!("Once ran {} time, OnceLock initialised {} time, 50 threads saw both", runs, inits))
    } else {
        Err(format!("Once ran {} times, OnceLock initialised {} times, all saw: {}", runs, inits, all_saw))
    }
}

fn channels() -> Result<String, String> {
    // many senders, one receiver, unbounded
    let (tx, rx) = mpsc::channel::<u64>();
    let senders: Vec<_> = (0..20u64)
        .map(|s| {
            let tx = tx.clone();
            thread::spawn(move || {
                for k in 0..500 {
                    tx.send(s * 500 + k).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let (mut count, mut sum) = (0u64, 0u64);
    for v in rx {
        count += 1;
        sum += v;
    }
    for s in senders {
        s.join().unwrap();
    }
    // a rendezvous channel (capacity 0): every send waits for its receive
    let (stx, srx) = mpsc::sync_channel::<u32>(0);
    let sender = thread::spawn(move || {
        for i in 0..1000 {
            stx.send(i).unwrap();
        }
    });
    let received: u32 = srx.iter().map(|_| 1).sum();
    sender.join().unwrap();
    // recv_timeout on an empty channel
    let (_keep, erx) = mpsc::channel::<u8>();
    let timed_out = erx.recv_timeout(Duration::from_millis(50)) == Err(mpsc::RecvTimeoutError::Timeout);
    if count == 10_000 && sum == 10_000 * 9_999 / 2 && received == 1000 && timed_out {
        Ok(format!("{} messages summing to {}, {} rendezvous, recv_timeout timed out", count, sum, received))
    } else {
        Err(format!("{} messages summing to {}, {} rendezvous, timeout {}", count, sum, received, timed_out))
    }
}

fn named_threads() -> Result<String, String> {
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let name = format!("worker-{}", i);
            thread::Builder::new()
                .name(name.clone())
                .stack_size(128 * 1024)
                .spawn(move || {
                    thread::yield_now();
                    let me = thread::current();
                    me.name() == Some(name.as_str())
                })
                .unwrap()
        })
        .collect();
    let mut ok = 0;
    for h in handles {
        let expected = h.thread().name().map(str::to_string);
        if h.join().unwrap() && expected.is_some() {
            ok += 1;
        }
    }
    let unnamed = thread::spawn(|| thread::current().name().is_none()).join().unwrap();
    let main_named = thread::current().name() == Some("main");
    // thread ids are distinct
    let ids: Vec<_> = (0..20).map(|_| thread::spawn(|| thread::current().id())).collect();
    let mut ids: Vec<_> = ids.into_iter().map(|h| h.join().unwrap()).collect();
    ids.sort_by_key(|id| format!("{:?}", id));
    ids.dedup();
    if ok == 10 && unnamed && main_named && ids.len() == 20 {
        Ok("10 named threads saw their names, unnamed none, main 'main', 20 distinct ids".to_string())
    } else {
        Err(format!("{} of 10 saw their names, unnamed {}, main {}, {} distinct ids", ok, unnamed,
                    main_named, ids.len()))
    }
}

fn scoped_park_rwlock_barrier() -> Result<String, String> {
    // scoped threads borrow from the stack
    let mut data = vec![1u64; 1000];
    thread::scope(|s| {
        for chunk in data.chunks_mut(100) {
            s.spawn(move || chunk.iter_mut().for_each(|x| *x *= 2));
        }
    });
    let doubled: u64 = data.iter().sum();

    // park and unpark
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    let parked = thread::spawn(move || {
        while !f.load(Ordering::SeqCst) {
            thread::park();
        }
        true
    });
    thread::sleep(Duration::from_millis(20));
    flag.store(true, Ordering::SeqCst);
    parked.thread().unpark();
    let unparked = parked.join().unwrap();

    // RwLock: writers keep a pair equal, readers check it
    let pair = Arc::new(RwLock::new((0u64, 0u64)));
    let torn = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let pair = Arc::clone(&pair);
            let torn = Arc::clone(&torn);
            thread::spawn(move || {
                for _ in 0..100 {
                    if i < 4 {
                        let mut p = pair.write().unwrap();
                        p.0 += 1;
                        thread::yield_now();
                        p.1 += 1;
                    } else {
                        let p = pair.read().unwrap();
                        let a = p.0;
                        thread::yield_now();
                        if a != p.1 {
                            torn.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let final_pair = *pair.read().unwrap();

    // Barrier: one leader per generation
    let barrier = Arc::new(Barrier::new(10));
    let leaders = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let b = Arc::clone(&barrier);
            let l = Arc::clone(&leaders);
            thread::spawn(move || {
                for _ in 0..5 {
                    if b.wait().is_leader() {
                        l.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let leaders = leaders.load(Ordering::SeqCst);
    let torn = torn.load(Ordering::SeqCst);
    if doubled == 2000 && unparked && final_pair == (400, 400) && torn == 0 && leaders == 5 {
        Ok(format!("scoped sum {}, unparked, rwlock pair {:?} never torn, {} barrier leaders",
                   doubled, final_pair, leaders))
    } else {
        Err(format!("scoped sum {}, unparked {}, pair {:?} torn {}, leaders {}", doubled, unparked,
                    final_pair, torn, leaders))
    }
}

fn echo_server() -> Result<String, String> {
    const CLIENTS: usize = 50;
    const MESSAGES: usize = 100;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {}", e))?;
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let served_by_server = Arc::clone(&served);
    // the server: one thread per connection, each echoing lines until end of file
    let server = thread::Builder::new().name("acceptor".into()).spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..CLIENTS {
            let (stream, _) = listener.accept().expect("accept");
            let served = Arc::clone(&served_by_server);
            handlers.push(thread::spawn(move || {
                let mut writer = stream.try_clone().expect("try_clone");
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).expect("read_line") == 0 {
                        break;
                    }
                    writer.write_all(line.as_bytes()).expect("write_all");
                    served.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        for h in handlers {
            h.join().unwrap();
        }
    }).unwrap();
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || -> Result<usize, String> {
                let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {}", e))?;
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let mut verified = 0;
                for m in 0..MESSAGES {
                    // messages of varied lengths, up to a few KiB
                    let msg = format!("client {} message {} {}\n", c, m, "x".repeat((c * 37 + m * 101) % 3000));
                    stream.write_all(msg.as_bytes()).map_err(|e| format!("write: {}", e))?;
                    line.clear();
                    reader.read_line(&mut line).map_err(|e| format!("read: {}", e))?;
                    if line != msg {
                        return Err(format!("client {} message {}: got {} bytes back, sent {}", c, m,
                                           line.len(), msg.len()));
                    }
                    verified += 1;
                }
                stream.shutdown(Shutdown::Write).map_err(|e| format!("shutdown: {}", e))?;
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest).map_err(|e| format!("read to end: {}", e))?;
                if !rest.is_empty() {
                    return Err(format!("client {}: {} bytes after the last echo", c, rest.len()));
                }
                Ok(verified)
            })
        })
        .collect();
    let mut verified = 0;
    let mut first_error = None;
    for h in clients {
        match h.join().unwrap() {
            Ok(v) => verified += v,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    server.join().map_err(|_| "the server panicked".to_string())?;
    println!("time: echo {} ms", start.elapsed().as_millis());
    let served = served.load(Ordering::SeqCst);
    if verified == CLIENTS * MESSAGES && served == verified {
        Ok(format!("{} clients, {} messages echoed and verified", CLIENTS, verified))
    } else {
        Err(format!("{} verified, {} served", verified, served))
    }
}

fn main() {
    // the expected panic of spawn_and_join must not clutter stderr
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if thread::current().name() != Some("panicker") {
            default_hook(info);
        }
    }));
    let start = Instant::now();
    let mut report = Report { failures: 0, only: std::env::args().skip(1).collect(), known: Vec::new() };
    report.check("spawn_join", spawn_and_join);
    report.check("mutex_condvar", mutex_condvar);
    report.check("atomics", atomics);
    report.check("sleep", sleeps);
    report.check("once", once);
    report.check("channels", channels);
    report.check("named_threads", named_threads);
    report.check("scoped_park_rwlock_barrier", scoped_park_rwlock_barrier);
    report.check("tcp_echo", echo_server);
    println!("time: total {} ms", start.elapsed().as_millis());
    if let Some(unknown) = report.only.iter().find(|o| !report.known.contains(&o.as_str())) {
        eprintln!("rust_threads: no check named '{}' (checks: {})", unknown, report.known.join(" "));
        std::process::exit(2);
    }
    if report.failures == 0 {
        println!("rust_threads: all checks passed");
    } else {
        println!("rust_threads: checks failed");
        std::process::exit(1);
    }
}
