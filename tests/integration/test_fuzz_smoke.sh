#!/usr/bin/env bash
# A short libFuzzer run of each target (tests/fuzz/), so they cannot rot: the settings
# parser and cooprun's option parsing. `make fuzz` builds them; a longer run is
#   build/fuzz/fuzz_settings -max_total_time=600 CORPUS_DIR tests/fuzz/corpus/settings
source "$(dirname "$0")/lib.sh"
command -v clang >/dev/null || skip "clang is not installed"
make -C "$ROOT" -s BUILD="$BUILD" fuzz >"$TMP/build.log" 2>&1 || { cat "$TMP/build.log"; fail "make fuzz failed"; }
run() {
    local target=$1 runs=$2
    mkdir -p "$TMP/$target"
    (cd "$ROOT" && "$BUILD/fuzz/fuzz_$target" -runs="$runs" "$TMP/$target" "tests/fuzz/corpus/$target") \
        >"$TMP/$target.log" 2>&1 || { tail -30 "$TMP/$target.log"; fail "fuzz_$target found a crash"; }
    note "fuzz_$target: $(grep -o 'Done [0-9]* runs.*' "$TMP/$target.log")"
}
run settings 20000
run cooprun 300
