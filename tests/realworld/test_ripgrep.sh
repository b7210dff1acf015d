#!/usr/bin/env bash
# Rust programs: Debian's ripgrep and fd-find, whose directory walkers run a pool of threads
# (--threads 4, -j 4) that share a work-stealing queue; Rust's standard library (1.63 here)
# waits on its mutexes, condition variables and thread parking with futex system calls made
# through libc's syscall(), which coop makes cooperative. On a generated tree (2,000 files in
# 40 directories, file i holding i % 7 matching lines among others), natively and under
# cooprun on the default hubs and on one hub:
#   rg --threads 4 -c needle TREE      the count of every file, compared with the generator's
#   rg --threads 4 --files TREE        every file, compared with find's list
#   fdfind -j 4 -t f . TREE            the same
# Output order depends on which thread finishes first, so lists are sorted before they are
# compared. Under coop rg's walker threads must be greenlets (its COOP_STATS line counts at
# least 4 created).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need rg ripgrep
need fdfind fd-find
need "$PYTHON" python3
need_library

LIMIT_S=60
# Runtime threads allowed under coop: none; these programs look up no names and wait for no
# children, and coop does not offload their file reads (COOP_FILE_OFFLOAD is off).
ALLOWED_RUNTIME=0

tree=$TMP/tree
"$PYTHON" - "$tree" >"$TMP/expected.counts" <<'EOF'
import os, sys
root = sys.argv[1]
for i in range(2000):
    directory = os.path.join(root, "d%02d" % (i % 40))
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "f%04d.txt" % i)
    with open(path, "w") as f:
        for line in range(50):
            f.write("needle %d %d\n" % (i, line) if line < i % 7 else "hay %d %d\n" % (i, line))
    if i % 7:
        print("%s:%d" % (path, i % 7))
EOF
sort -o "$TMP/expected.counts" "$TMP/expected.counts"
find "$tree" -type f | sort >"$TMP/expected.files"
note "tree: $(grep -c . "$TMP/expected.files") files, $(grep -c . "$TMP/expected.counts") with matches"

# same LABEL WHAT EXPECTED: the sorted stdout of run LABEL must be the file EXPECTED.
same() {
    sort "$TMP/out.$1" | cmp -s - "$3" || fail "$1: $2 differs from the expected ($(sort "$TMP/out.$1" | diff - "$3" | head -n 3))"
}

for mode in native coop coop-hubs1; do
    prefix=()
    case $mode in
        coop) prefix=("$COOPRUN" --) ;;
        coop-hubs1) prefix=(env COOP_HUBS=1 "$COOPRUN" --) ;;
    esac
    COOP_STATS=1 run_watched "$mode.count" "${prefix[@]}" rg --threads 4 -c needle "$tree"
    rg_threads=$max_threads
    same "$mode.count" "rg -c's counts" "$TMP/expected.counts"
    created=$(coop_stat created "$TMP/err.$mode.count")
    [ $mode = native ] || ((created >= 4)) || fail "$mode: rg created ${created:-no} greenlets with --threads 4"
    run_watched "$mode.files" "${prefix[@]}" rg --threads 4 --files "$tree"
    same "$mode.files" "rg --files' list" "$TMP/expected.files"
    run_watched "$mode.fd" "${prefix[@]}" fdfind -j 4 -t f . "$tree"
    fd_threads=$max_threads
    same "$mode.fd" "fdfind's list" "$TMP/expected.files"
    check_threads "${mode%%-*}" "$rg_threads"
    check_threads "${mode%%-*}" "$fd_threads"
    note "$mode: rg and fdfind gave the expected counts and lists${created:+; rg: $created greenlets created}; at most $rg_threads (rg) and $fd_threads (fdfind) OS threads"
    [ $mode = coop ] && coop_created=$created
done

# The OS threads natively are not in the matrix: the runs are shorter than most samples.
matrix "rg --threads 4; fdfind -j 4 (Rust)" "$(pkg_version ripgrep); $(pkg_version fd-find)" - "- ($coop_created greenlets in rg)" pass
echo "PASS: ripgrep and fd-find natively, under coop and on one hub: the expected counts and lists"
