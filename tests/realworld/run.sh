#!/usr/bin/env bash
# Runs every tests/realworld/test_*.sh (or those named) through tests/run-integration.sh, then
# prints each test's matrix line (program | version | OS threads natively | under coop |
# result) from its log in $BUILD/log/ (build/log/). The realworld tests need Debian packages beyond
# `make test`'s own; install them first with:
#     scripts/deps.sh $(tests/realworld/run.sh --packages)
cd "$(dirname "$0")/../.." || exit 2
PACKAGES="python3 curl memcached iperf pigz xz-utils zstd redis-server haproxy mosquitto mosquitto-clients git nodejs ruby default-jre-headless unbound bind9-dnsutils perl mariadb-server mariadb-client sysbench aria2 nginx tinyproxy apache2 bind9 varnish postgresql erlang-base erlang-crypto knot privoxy guile-3.0 golang-go ripgrep fd-find mono-runtime mono-mcs stunnel4 openssl trafficserver"
if [ "${1:-}" = --packages ]; then
    echo "$PACKAGES"
    exit 0
fi
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/realworld/test_*.sh)
tests/run-integration.sh "${tests[@]}"
status=$?
echo "realworld matrix:"
for t in "${tests[@]}"; do
    log=${BUILD:-build}/log/$(basename "$t" .sh).log
    line=$(grep -h '^matrix: ' "$log" 2>/dev/null | tail -n 1)
    echo "  $(basename "$t" .sh): ${line#matrix: }"
done
exit $status
