#!/usr/bin/env bash
# The benchmark suite must keep running: tests/bench/run.sh --quick --smoke (levels 1 and 100,
# 64 B, 0.3 s, small micro-benchmarks, a pair of preemption runs with and without a hog, no
# installs, missing peers skipped) must produce results.md with a number in every coop cell:
# both echo rows, every micro-benchmark, and the preemption rows. How long it takes is printed,
# not judged (timing belongs to make bench; run.sh has a budget and the timeout below is a
# hang guard).
source "$(dirname "$0")/lib.sh"
[ -f "$BUILD/libcoop.so" ] || skip "$BUILD/libcoop.so not built yet"

OUT=$TMP/bench
start=$(date +%s)
timeout -k 5 200 bash "$ROOT/tests/bench/run.sh" --quick --smoke --out "$OUT" >"$TMP/run.out" 2>"$TMP/run.err" ||
    fail "run.sh --smoke failed (status $?): $(tail -n 20 "$TMP/run.err")"
elapsed=$(($(date +%s) - start))
note "run.sh --quick --smoke took ${elapsed} s"
sed 's/^/    /' "$TMP/run.out"

md=$OUT/results.md
[ -s "$md" ] || fail "no $md"
grep -q '^### Echo, 64 B messages' "$md" || fail "results.md has no 64 B echo table"
grep -q '^### Micro-benchmarks' "$md" || fail "results.md has no micro-benchmark table"
cmp -s "$md" <(sed -n '/^# coop benchmarks/,$p' "$TMP/run.out") || fail "run.sh did not print results.md"

# column_of HEADER NAME: the index of NAME's cell in a table row (as read with IFS='|'), or -1.
column_of() {
    local i names
    IFS='|' read -ra names <<<"$1"
    for i in "${!names[@]}"; do
        [ "$(echo "${names[$i]}" | xargs)" = "$2" ] && { echo "$i"; return; }
    done
    echo -1
}

# The echo table: the columns named in its header, then a row per level.
header=$(grep -m1 '^| connections | epoll' "$md") || fail "no echo table header"
IFS='|' read -ra names <<<"$header"
coop_col=$(column_of "$header" coop)
((coop_col > 0)) || fail "no coop column in: $header"
for level in 1 100; do
    row=$(sed -n '/^### Echo, 64 B/,/^Median/p' "$md" | grep -m1 "^| $level |") || fail "no row for $level connections"
    IFS='|' read -ra cells <<<"$row"
    cell=$(echo "${cells[$coop_col]}" | xargs)
    [[ "$cell" =~ ^[0-9.]+k?\ \( ]] || fail "coop at $level connections: '$cell' is not a number"
    ratio=$(echo "${cells[$((${#names[@]} - 4))]}" | xargs) # coop/epoll, first ratio column
    [[ "$ratio" =~ ^[0-9]+\.[0-9]+$ ]] || fail "coop/epoll at $level connections: '$ratio'"
    note "$level connections: coop $cell, coop/epoll $ratio"
done
# No run of coop, or of this project's own servers, may have gone wrong (a crash, a hang,
# loadgen errors); the peers' troubles (Go, gevent) are shown but are not coop's.
wrong=$(sed -n '/^### Runs that went wrong/,$p' "$md" | grep '^- ')
[ -z "$wrong" ] || note "runs that went wrong: $wrong"
! grep -qE '^- (coop[^|]*|epoll \(ref\)|threads native) at ' <<<"$wrong" || fail "$wrong"

# The micro-benchmark rows: every coop cell has a number.
for what in 'context switch' 'pthread_create' 'uncontended' 'while a second thread exists' 'hand-off between' 'condition variable' \
    'a signal from the kernel' 'pthread_kill(pthread_self())' \
    'RSS per idle thread, 1,000' 'each system(' 'each popen(' 'usleep(1000) beside a computing thread per CPU'; do
    row=$(grep -m1 -F "$what" "$md") || fail "no micro-benchmark row for '$what'"
    IFS='|' read -ra cells <<<"$row"
    cell=$(echo "${cells[3]}" | xargs) # | benchmark | native | coop |
    [[ "$cell" =~ ^[0-9][0-9.,]*\ (ns|ms|KiB)$ ]] || fail "coop '$what': '$cell' is not a number"
done
row=$(grep -m1 '^| context switch' "$md")
IFS='|' read -ra cells <<<"$row"
[[ "$(echo "${cells[4]}" | xargs)" =~ ^[0-9][0-9.,]*\ ns$ ]] || fail "coop ucontext switch: '${cells[4]}'"
# The TLS table: a number in every cell of each mechanism this machine has.
header=$(grep -m1 '^| benchmark | native | COOP_TLS=' "$md") || fail "results.md has no TLS table"
for mechanism in "${TLS_MECHANISMS[@]}"; do
    col=$(column_of "$header" "COOP_TLS=$mechanism")
    ((col > 0)) || fail "no COOP_TLS=$mechanism column in: $header"
    for what in 'thread switch' 'thread create + join' 'RSS per idle greenlet, C (' 'RSS per idle greenlet, C++'; do
        row=$(grep -m1 -F "| $what" "$md") || fail "no TLS row for '$what'"
        IFS='|' read -ra cells <<<"$row"
        cell=$(echo "${cells[$col]}" | xargs)
        [[ "$cell" =~ ^[0-9][0-9.,]*\ (ns|KiB) ]] || fail "COOP_TLS=$mechanism '$what': '$cell' is not a number"
    done
done
# The preemption section: a row per server, numbers where echoes came back.
for what in 'coop, preemption on' 'coop, preemption off' 'coop + hog, preemption on' 'coop + hog, preemption off'; do
    row=$(grep -m1 "^| $what |" "$md") || fail "no preemption row for '$what'"
    IFS='|' read -ra cells <<<"$row"
    [[ "$(echo "${cells[2]}" | xargs)" =~ ^[0-9.]+k?$ ]] || fail "preemption, $what: '${cells[2]}' is not a number"
done
grep -q '^| echo p99 beside a hog, preemption on' "$md" || fail "no preemption target row"
echo "PASS: the benchmark suite runs; every coop cell has a number (COOP_TLS=$TLS_MECHANISM_LIST too)"
