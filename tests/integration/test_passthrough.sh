#!/usr/bin/env bash
# Pass-through fidelity of the real library: with every family patched, ordinary programs
# (coreutils, tar, find, bash, python) print the same bytes and end with the same status under
# cooprun as without it, down to a death by signal, and so they do on the cooperative path
# (cooprun --always-cooperative).
#
# Uses COOP_LIBRARY when set (a sanitizer build, say), else build/libcoop.so.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
ulimit -c 0 # the programs killed by SIGSEGV must not leave cores behind

[ -f "$COOP_LIBRARY" ] || skip "no library at $COOP_LIBRARY (build it first)"
unset COOP_PATCH # every family

# same WHAT COMMAND...: runs COMMAND plainly, then under cooprun, then under cooprun with the
# cooperative path forced (--always-cooperative: every call waits the way it would beside
# other greenlets), and fails unless stdout and exit status match. The braces take the
# shell's report of a death by signal into the .err file.
same() {
    local what=$1 plain coop how
    shift
    { "$@"; } >"$TMP/plain.out" 2>"$TMP/plain.err"
    plain=$?
    for how in "" --always-cooperative; do
        { "$COOPRUN" ${how:+"$how"} -- "$@"; } >"$TMP/coop.out" 2>"$TMP/coop.err"
        coop=$?
        [ "$plain" -eq "$coop" ] ||
            fail "$what: status $coop under coop $how, $plain plainly; stderr under coop: $(head -c 600 "$TMP/coop.err")"
        cmp -s "$TMP/plain.out" "$TMP/coop.out" ||
            fail "$what: stdout differs under coop $how ($(wc -c <"$TMP/coop.out") bytes, $(wc -c <"$TMP/plain.out") plainly)"
    done
    note "ok: $what (status $plain, $(wc -c <"$TMP/plain.out") bytes out)"
}

# Inputs: 100 MiB of random bytes, ~20 MiB of random text lines (base64 widens 3 bytes to 4),
# and a directory tree made of pieces of that text.
make_inputs() {
    head -c 100M /dev/urandom >"$TMP/big"
    head -c 15M /dev/urandom | base64 -w 60 >"$TMP/lines"
    mkdir -p "$TMP/tree/a/b" "$TMP/tree/c"
    split -l 50000 "$TMP/lines" "$TMP/tree/a/b/part-"
    cp /etc/os-release "$TMP/tree/c/"
    touch -d 2024-01-01 "$TMP/tree" "$TMP/tree"/* "$TMP/tree"/*/* "$TMP/tree"/*/*/*
}

# A bash script with the shell's own machinery: pipes, subshells, command substitution,
# background jobs and wait, PIPESTATUS.
write_shell_script() {
    cat >"$TMP/script.sh" <<'EOF'
sum=$(seq 1 100000 | awk '{ s += $1 } END { printf "%d\n", s }')
echo "sum $sum"
(cd /usr && echo "subshell in $(pwd)"; exit 3)
echo "subshell status $?"
{ for i in 1 2 3 4; do (sleep "0.0$i"; echo "job $i") & done; wait; } | sort
sleep 0.1 & pid=$!
wait "$pid"; echo "waited $?"
false | true | (exit 4); echo "pipeline ${PIPESTATUS[*]}"
echo "upper $(printf '%s\n' b a c | tr a-z A-Z | sort -r | paste -sd ' ')"
exit 7
EOF
}

# A small Python program: hashing, JSON, a child process.
PYTHON_PROGRAM='
import hashlib, json, subprocess, sys
data = [{"n": i, "sq": i * i} for i in range(2000)]
text = json.dumps(data, sort_keys=True)
print(hashlib.sha256(text.encode()).hexdigest())
print(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip())
sys.exit(5)
'

make_inputs
write_shell_script
note "library: $COOP_LIBRARY"
same "ls -la /usr/bin" ls -la /usr/bin
same "sort 20 MiB of lines" sort "$TMP/lines"
same "sha256sum 100 MiB" sha256sum "$TMP/big"
# shellcheck disable=SC2016 # $1 belongs to the inner shell, as below
same "cat | cat | sha256sum" bash -c 'cat "$1" | cat | sha256sum' _ "$TMP/big"
same "grep -c" grep -c 'A[0-9]' "$TMP/lines"
same "grep without a match" grep -c 'no such text' "$TMP/lines"
# shellcheck disable=SC2016
same "tar a directory and list it" bash -c 'tar -C "$1" -cf - . | tar -tvf -' _ "$TMP/tree"
same "find" find /usr/lib /usr/share/doc -maxdepth 2 -name '*.so*' -o -name copyright
same "bash pipes, subshells, jobs" bash "$TMP/script.sh"
same "python3" /usr/bin/python3 -c "$PYTHON_PROGRAM"
same "killed by SIGKILL" sh -c 'kill -KILL $$'
same "killed by SIGSEGV" sh -c 'kill -SEGV $$'
echo "passthrough: all checks passed"
