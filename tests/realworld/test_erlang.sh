#!/usr/bin/env bash
# Debian's Erlang/OTP 25 (the BEAM, with its JIT) running digest_server.erl: gen_tcp and an
# Erlang process per connection, on the BEAM's schedulers. digest_client.py opens 100
# concurrent connections and sends 4 requests on each, 1 B to 192 KiB: every answer must carry
# the payload's SHA-256 (OpenSSL's, through Erlang's crypto) and the payload itself, byte for
# byte. SIGTERM must print the count of every connection and request and end the BEAM with
# status 0. Natively the BEAM has ~20 OS threads (schedulers, dirty schedulers, its I/O and
# signal threads); under cooprun each is a greenlet.
#
# Every BEAM thread sets up a signal stack of its own, and the schedulers run Erlang code on
# each Erlang process's own small stack: a signal frame pushed there overwrites that process's
# heap. coop's preemption signal did so within a second (a crash in the garbage collector, a
# jump to 0) until coop kept its signals out of such threads (core/preempt.c).
# shellcheck source=tests/realworld/digest_lib.sh
source "$(dirname "$0")/digest_lib.sh"
need erl erlang-base
provided "Erlang's crypto application" erlang-crypto \
    erl -noshell -eval 'halt(case code:lib_dir(crypto) of {error, _} -> 1; _ -> 0 end).'
need "$PYTHON" python3
need_library

erlc -o "$TMP" "$REALWORLD/digest_server.erl" || fail "erlc could not compile digest_server.erl"
# Runtime threads allowed under coop: coop's pool, which reads the BEAM's code files.
ALLOWED_RUNTIME=$POOL
digest_serve native 0 erl -noshell -pa "$TMP" -run digest_server main
native_threads=$max_threads     # sampled: for the record, not a verdict
COOP_STATS=1 digest_serve coop 0 "$COOPRUN" -- erl -noshell -pa "$TMP" -run digest_server main
# The BEAM's statistics come last: the erl script's helpers (dirname, sed) print theirs first.
stats=$(grep '^coop: stats: greenlets' "$TMP/coop.err" | tail -n 1)
created=$(coop_stat created <(echo "$stats"))
note "coop: $stats"
((created >= 10)) || fail "coop: the BEAM's threads did not become greenlets (created '$created')"
matrix "erl (the BEAM: JIT, schedulers with signal stacks; a process per connection)" "$(pkg_version erlang-base)" \
    "$native_threads" "$max_threads ($created greenlets)" pass
echo "PASS: $REQUESTS answers verified natively and under coop; $native_threads OS threads natively, $max_threads under coop"
