#!/usr/bin/env bash
# Debian's git, whose pack-objects computes deltas on a pool of threads (pack.threads) that
# share work through mutexes and condition variables, and whose clone runs upload-pack,
# pack-objects and index-pack (a thread pool too) as child processes joined by pipes. On a
# generated history (git_history.py: 1,000 files, 10 commits, ~4,500 objects):
#   git repack -adf --threads=4 --window=20    (rewrites the pack, every delta recomputed)
#   git clone --no-local -c pack.threads=4     (the full fetch protocol over pipes)
# natively and under cooprun (which the children inherit). The repacked repository must pass
# git fsck and hold exactly the original objects; the clone must pass fsck and have the same
# HEAD. Natively pack-objects runs 5 OS threads; under coop its threads are greenlets (its
# COOP_STATS line must count at least 4) over the hubs' threads.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need git git
need "$PYTHON" python3
need_library

LIMIT_S=40
# Runtime threads allowed under coop: the pool's. A parent waiting for its child (git clone
# for upload-pack...) while it has greenlets of its own would send the wait to the pool
# (COOP_THREADPOOL_SIZE, 2 here); in these runs each process waits with a single greenlet,
# a plain call, so in practice every process stays at one thread.
ALLOWED_RUNTIME=$POOL
export GIT_CONFIG_NOSYSTEM=1 HOME=$TMP # no user or system configuration

git init -q -b main "$TMP/repo" || fail "git init failed"
"$PYTHON" "$REALWORLD/git_history.py" 1000 10 | git -C "$TMP/repo" fast-import --quiet ||
    fail "git fast-import failed"
head=$(git -C "$TMP/repo" rev-parse main)
git -C "$TMP/repo" cat-file --batch-all-objects --batch-check | sort >"$TMP/objects"
note "history: $(grep -c . "$TMP/objects") objects, HEAD $head"

results=()
for mode in native coop; do
    prefix=()
    [ $mode = coop ] && prefix=("$COOPRUN" --)
    cp -a "$TMP/repo" "$TMP/repack.$mode"
    COOP_STATS=1 run_watched "$mode" "${prefix[@]}" git -C "$TMP/repack.$mode" repack -adf --threads=4 --window=20 -q
    repack_threads=$max_threads
    # coop's own count (of its processes, the most): /proc samples may miss the delta threads.
    created=$(sed -n 's/^coop: stats: greenlets created \([0-9]*\).*/\1/p' "$TMP/err.$mode" | sort -n | tail -n 1)
    [ $mode = native ] || ((created >= 4)) || fail "coop: pack-objects created ${created:-no} greenlets with --threads=4"
    git -C "$TMP/repack.$mode" fsck --full --no-progress 2>"$TMP/fsck.$mode" || fail "$mode: fsck after repack: $(head -n 5 "$TMP/fsck.$mode")"
    git -C "$TMP/repack.$mode" cat-file --batch-all-objects --batch-check | sort | cmp -s - "$TMP/objects" ||
        fail "$mode: the repacked repository does not hold the original objects"
    (($(find "$TMP/repack.$mode/.git/objects/pack" -name '*.pack' | wc -l) == 1)) || fail "$mode: repack left more than one pack"
    note "$mode: repack: ${created:+$created greenlets created, }fsck clean, the same $(grep -c . "$TMP/objects") objects, $(du -k "$TMP/repack.$mode/.git/objects/pack" | cut -f1) KiB; at most $repack_threads OS threads in one process ($samples samples)"

    run_watched "$mode" "${prefix[@]}" git -c pack.threads=4 clone -q --no-local "$TMP/repo" "$TMP/clone.$mode"
    clone_threads=$max_threads
    [ "$(git -C "$TMP/clone.$mode" rev-parse HEAD)" = "$head" ] || fail "$mode: the clone's HEAD differs"
    git -C "$TMP/clone.$mode" fsck --full --no-progress 2>"$TMP/fsck.$mode" || fail "$mode: fsck of the clone: $(head -n 5 "$TMP/fsck.$mode")"
    note "$mode: clone: HEAD $head, fsck clean; at most $clone_threads OS threads in one process ($samples samples)"
    if [ $mode = coop ]; then
        check_threads coop "$repack_threads"
        check_threads coop "$clone_threads"
    fi
    results+=("repack $repack_threads, clone $clone_threads")
done

matrix "git (repack --threads=4; clone --no-local)" "$(pkg_version git)" "${results[0]}" "${results[1]}" pass
echo "PASS: git repack and clone natively and under coop; most OS threads in one process: ${results[0]} natively, ${results[1]} under coop"
