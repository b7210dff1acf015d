#!/usr/bin/env bash
# Soak: echo_threads under cooprun with connection churn (rounds of 200 connections that
# each make 50 round trips and close) for DURATION seconds (default 600). Every INTERVAL
# seconds it prints the server's open fds and RSS: both must stay flat.
#   tests/bench/soak.sh [DURATION] [INTERVAL]
set -u
cd "$(dirname "$0")/../.." || exit 2
duration=${1:-600} interval=${2:-30}
ulimit -n "$(ulimit -Hn)"
out=$(mktemp)
scripts/cooprun -- build/samples/echo_threads >"$out" 2>&1 &
server=$!
trap 'kill ${churn:-} 2>/dev/null; wait ${churn:-} 2>/dev/null; kill $server 2>/dev/null; rm -f "$out"' EXIT

for _ in $(seq 50); do port=$(sed -n 's/^listening on //p' "$out"); [ -n "$port" ] && break; sleep 0.1; done
[ -n "${port:-}" ] || { echo "soak: the server did not start"; exit 1; }
( while :; do build/bench/loadgen -p "$port" -c 200 -s 256 -n 50 --verify >/dev/null || echo "soak: a round failed"; done ) &
churn=$!
echo "seconds open_fds rss_kib"
start=$(date +%s)
while :; do
    now=$(( $(date +%s) - start ))
    echo "$now $(ls /proc/$server/fd | wc -l) $(awk '/VmRSS/ {print $2}' /proc/$server/status)"
    [ "$now" -ge "$duration" ] && break
    sleep "$interval"
done
