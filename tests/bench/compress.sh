#!/usr/bin/env bash
# tests/bench/compress.sh TOOL INPUT: the wall time of one of Debian's CPU-bound thread pools
# over INPUT, its output discarded: pigz -p N, xz -TN -1, zstd -TN or sort --parallel=N, N the
# CPUs the process may use. Prints "bench=compress_TOOL ns_per_op=WALL_NS". run.sh runs it
# natively and under cooprun (the tool then inherits coop), in turn.
tool=$1 input=$2
n=$(nproc)
case $tool in
    pigz) command=(pigz -p "$n" -c) ;;
    xz) command=(xz -T"$n" -1 -c) ;;
    zstd) command=(zstd -T"$n" -q -c) ;;
    sort) command=(sort --parallel="$n" -S 256M) ;;
    *) echo "compress.sh: unknown tool $tool" >&2; exit 2 ;;
esac
start=$(date +%s%N)
"${command[@]}" <"$input" >/dev/null || exit 1
echo "bench=compress_$tool ns_per_op=$(($(date +%s%N) - start))"
