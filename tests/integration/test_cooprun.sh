#!/usr/bin/env bash
# Checks the scripts/cooprun wrapper: its options and the COOP_* variables they set, its exit
# statuses, where it finds the library, and how it builds LD_PRELOAD.
#
# The library is COOP_LIBRARY when set (a sanitizer build, say), else build/libcoop.so, else a
# stand-in built here that only has to load: the wrapper's behaviour does not depend on it. The
# one check of the library's own reaction to a bad setting needs the real library.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
ulimit -c 0

# A stand-in library defines the symbol coop_stub (as the one built here does).
is_stand_in() { grep -qa coop_stub "$1"; }

use_library() {
    [ -f "$COOP_LIBRARY" ] && return
    note "no library at $COOP_LIBRARY: using a stand-in"
    command -v cc >/dev/null || skip "no library and no C compiler to build a stand-in"
    echo 'int coop_stub;' >"$TMP/stub.c"
    cc -shared -fPIC -o "$TMP/libcoop.so" "$TMP/stub.c" || fail "cannot build the stand-in"
    COOP_LIBRARY=$TMP/libcoop.so
}

# Runs a command, keeping its output in $TMP/out and $TMP/err and its exit status in $status.
# The braces take the shell's own report of a death by signal into $TMP/err as well.
run() { { "$@"; } >"$TMP/out" 2>"$TMP/err"; status=$?; }

# expect STATUS WHAT COMMAND...: fails unless COMMAND exits with STATUS.
expect() {
    local want=$1 what=$2
    shift 2
    run "$@"
    [ "$status" -eq "$want" ] ||
        fail "$what: status $status, expected $want; stderr: $(head -c 600 "$TMP/err")"
    note "ok: $what (status $want)"
}

# True when $TMP/err holds exactly one line, and it matches every PATTERN given.
one_error_line() {
    local pattern
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || return 1
    for pattern; do grep -q -- "$pattern" "$TMP/err" || return 1; done
}

# expect_error STATUS WHAT COMMAND...: as expect, and cooprun says why on exactly one line.
expect_error() {
    expect "$@"
    one_error_line '^cooprun: ' || fail "$2: wanted one 'cooprun: ...' line on stderr, got: $(cat "$TMP/err")"
}

# expect_out TEXT WHAT COMMAND...: fails unless COMMAND succeeds and prints exactly TEXT.
expect_out() {
    local want=$1 what=$2
    shift 2
    expect 0 "$what" "$@"
    [ "$(cat "$TMP/out")" = "$want" ] || fail "$what: printed '$(cat "$TMP/out")', expected '$want'"
}

# same_status WHAT COMMAND...: COMMAND ends the same way plainly and under cooprun.
same_status() {
    local what=$1 plain
    shift
    run "$@"
    plain=$status
    expect "$plain" "$what, as plainly" "$COOPRUN" -- "$@"
}

check_help_and_version() {
    local option
    expect 0 "--help" "$COOPRUN" --help
    for option in --patch --no-io --no-net --no-poll --no-time --no-thread --no-dns --no-file \
        --no-proc --no-signal --hubs --stack-size --stats --log --switch --dump-signal --max-blocking \
        --preempt --handoff --max-spares --on-deadlock --no-inherit --always-cooperative -v --verbose -h --help -V --version; do
        grep -qE -- "(^|[ ,])$option([ ,=]|$)" "$TMP/out" || fail "--help does not mention $option"
    done
    note "ok: --help mentions every option"
    expect 0 "--version" "$COOPRUN" --version
    grep -qxE 'cooprun \(coop\) [0-9]+\.[0-9]+\.[0-9]+' "$TMP/out" ||
        fail "--version printed '$(cat "$TMP/out")'"
    expect 0 "-V" "$COOPRUN" -V
}

check_program_status() {
    expect 0 "true" "$COOPRUN" -- true
    expect 1 "false" "$COOPRUN" -- false
    same_status "killed by SIGTERM" sh -c 'kill -TERM $$'
    expect_out "[a b][][--log]" "arguments untouched" "$COOPRUN" printf '[%s]' 'a b' '' --log
    # argv[0] stays as written: exec by path must not turn "cat" into "/usr/bin/cat".
    # shellcheck disable=SC2016 # $1 belongs to the inner shell
    expect_out "cat /proc/self/cmdline " "argv[0] kept" \
        bash -c '"$1" cat /proc/self/cmdline | tr "\0" " "' _ "$COOPRUN"
}

check_cannot_run() {
    : >"$TMP/not-executable"
    cp /bin/true "$TMP/setuid-true" && chmod u+s "$TMP/setuid-true"
    cp /bin/true "$TMP/setgid-true" && chmod g+s "$TMP/setgid-true"
    expect_error 127 "program not in PATH" "$COOPRUN" -- "no-such-program-$$"
    expect_error 127 "program path missing" "$COOPRUN" -- "$TMP/missing"
    expect_error 126 "not executable" "$COOPRUN" -- "$TMP/not-executable"
    expect_error 126 "a directory" "$COOPRUN" -- "$TMP"
    expect_error 126 "setuid program refused" "$COOPRUN" -- "$TMP/setuid-true"
    expect_error 126 "setgid program refused" "$COOPRUN" -- "$TMP/setgid-true"
}

check_usage_errors() {
    expect_error 125 "unknown option" "$COOPRUN" --bogus -- true
    expect_error 125 "unknown --no- family" "$COOPRUN" --no-bogus -- true
    expect_error 125 "no program" "$COOPRUN" --stats
    expect_error 125 "option without its value" "$COOPRUN" --log
    expect_error 125 "flag given a value" "$COOPRUN" --stats=yes true
    expect_error 125 "bad --log level" "$COOPRUN" --log loud -- true
    expect_error 125 "bad family in --patch" "$COOPRUN" --patch io,bogus -- true
    expect_error 125 "bad --stack-size" "$COOPRUN" --stack-size=12q -- true
    expect_error 125 "bad --hubs" "$COOPRUN" --hubs 0 -- true
    expect_error 125 "too many --hubs" "$COOPRUN" --hubs=97 -- true
    expect_error 125 "bad --switch" "$COOPRUN" --switch slow -- true
    expect_error 125 "bad --dump-signal" "$COOPRUN" --dump-signal NOPE -- true
    expect_error 125 "uncatchable --dump-signal" "$COOPRUN" --dump-signal 9 -- true
    expect_error 125 "bad --max-blocking" "$COOPRUN" --max-blocking soon -- true
    expect_error 125 "bad --preempt" "$COOPRUN" --preempt -5 -- true
    expect_error 125 "bad --on-deadlock" "$COOPRUN" --on-deadlock panic -- true
    expect_error 125 "COOP_LIBRARY missing" env COOP_LIBRARY="$TMP/none.so" "$COOPRUN" true
}

# Every option shows up in the program's environment, in both --opt VALUE and --opt=VALUE forms.
check_settings() {
    local setting
    expect 0 "options as COOP_* variables" "$COOPRUN" --stats --log debug --patch=all --no-dns \
        --stack-size 64k --switch=fast --dump-signal USR1 --max-blocking=50 --preempt 5 --handoff=7 --max-spares 3 \
        --on-deadlock exit --always-cooperative --hubs=3 -v -- env
    for setting in COOP_STATS=1 COOP_LOG=debug COOP_PATCH=all,-dns COOP_STACK_SIZE=64k COOP_HUBS=3 \
        COOP_SWITCH=fast "COOP_DUMP_SIGNAL=$(kill -l USR1)" COOP_MAX_BLOCKING_MS=50 COOP_PREEMPT_MS=5 COOP_HANDOFF_MS=7 COOP_MAX_SPARES=3 \
        COOP_ON_DEADLOCK=exit COOP_ALWAYS_COOPERATIVE=1 COOP_VERBOSE=1; do
        grep -qx -- "$setting" "$TMP/out" || fail "$setting missing from the program's environment"
    done
    expect 0 "--no-FAMILY extends COOP_PATCH" env COOP_PATCH=io,net "$COOPRUN" --no-net -- env
    grep -qx COOP_PATCH=io,net,-net "$TMP/out" || fail "$(grep COOP_PATCH "$TMP/out"), expected io,net,-net"
    # The real library may take itself and its settings out of the environment it was told not
    # to pass on, so only the stand-in shows the variable.
    expect 0 "--no-inherit" "$COOPRUN" --no-inherit -- env
    if is_stand_in "$COOP_LIBRARY"; then
        grep -qx COOP_NO_INHERIT=1 "$TMP/out" || fail "COOP_NO_INHERIT=1 missing"
    fi
}

# The program that shows what LD_PRELOAD the program run by cooprun gets.
# shellcheck disable=SC2016 # expanded by that program, not here
SHOW_PRELOAD=(sh -c 'echo "$LD_PRELOAD"')

# A harmless system library to stand for something the user preloads already.
other_library() { PATH=$PATH:/sbin:/usr/sbin ldconfig -p | awk '$1 == "libm.so.6" { print $NF; exit }'; }

check_preload() {
    local library other
    library=$(readlink -f "$COOP_LIBRARY")${ASAN_RUNTIME:+:$ASAN_RUNTIME}
    other=$(other_library)
    [ -n "$other" ] || fail "no libm.so.6 found with ldconfig"
    expect_out "$library" "LD_PRELOAD set" "$COOPRUN" -- "${SHOW_PRELOAD[@]}"
    expect_out "$library:$other" "earlier LD_PRELOAD kept after coop" \
        env LD_PRELOAD="$other" "$COOPRUN" -- "${SHOW_PRELOAD[@]}"
    expect_out "$library:$other" "coop not preloaded twice" \
        env LD_PRELOAD="$other $library" "$COOPRUN" -- "${SHOW_PRELOAD[@]}"
}

# The installed layout (PREFIX/bin/cooprun, PREFIX/lib/coop/libcoop.so), reached through a
# symbolic link to the script as a package manager's alternatives would make.
check_installed_layout() {
    local prefix=$TMP/prefix
    mkdir -p "$prefix/bin" "$prefix/lib/coop" "$TMP/bare/bin"
    cp "$COOPRUN" "$prefix/bin/cooprun"
    cp "$COOPRUN" "$TMP/bare/bin/cooprun"
    ln -s "$(readlink -f "$COOP_LIBRARY")" "$prefix/lib/coop/libcoop.so"
    ln -s "$prefix/bin/cooprun" "$TMP/cooprun-link"
    expect_out "$(readlink -f "$prefix/lib/coop/libcoop.so")${ASAN_RUNTIME:+:$ASAN_RUNTIME}" "installed layout" \
        env -u COOP_LIBRARY "$TMP/cooprun-link" -- "${SHOW_PRELOAD[@]}"
    expect_error 125 "no library beside the script" env -u COOP_LIBRARY "$TMP/bare/bin/cooprun" true
}

# The library, not the script, checks settings given in the environment.
check_library_rejects_bad_setting() {
    if is_stand_in "$COOP_LIBRARY"; then
        note "skipped: COOP_PATCH=bogus needs the real library ($COOP_LIBRARY is a stand-in)"
        return
    fi
    run env COOP_PATCH=bogus "$COOPRUN" true
    [ "$status" -ne 0 ] || fail "COOP_PATCH=bogus: the program ran (status 0)"
    one_error_line COOP_PATCH bogus ||
        fail "COOP_PATCH=bogus: wanted one stderr line naming COOP_PATCH and bogus, got: $(cat "$TMP/err")"
    note "ok: COOP_PATCH=bogus refused by the library (status $status)"
}

use_library
note "library: $COOP_LIBRARY"
check_help_and_version
check_program_status
check_cannot_run
check_usage_errors
check_settings
check_preload
check_installed_layout
check_library_rejects_bad_setting
echo "cooprun: all checks passed"
