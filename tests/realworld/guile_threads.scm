;; tests/realworld/guile_threads.scm: Guile threads that allocate and recurse deeply at once,
;; so that the collector (BDW GC: it stops the other threads with signals, and marks each
;; thread's VM stack itself) runs while their VM stacks grow and move. stdout: the results;
;; stderr: how many collections ran.
(use-modules (ice-9 threads) (srfi srfi-1))

;; map over 300,000 numbers recurses without a tail call: the thread's VM stack grows to
;; megabytes, and is moved each time it doubles. The sum is k * 44,999,850,000.
(define (deep k)
  (fold + 0 (map (lambda (x) (* x k)) (iota 300000))))

;; 200,000 conses, in lists of at most 1,001: garbage at a steady rate. Returns 801.
(define (churn n)
  (let loop ((i 0) (acc '()))
    (if (< i 200000)
        (loop (+ i 1) (if (> (length acc) 1000) (list i) (cons (* i n) acc)))
        (length acc))))

(define threads
  (map (lambda (k) (call-with-new-thread (lambda () (deep k)))) (iota 6)))
(display (map join-thread threads))
(newline)
;; par-map: futures, run by Guile's pool of worker threads.
(display (par-map churn (iota 8)))
(newline)
(format (current-error-port) "collections: ~a~%" (assq-ref (gc-stats) 'gc-times))
