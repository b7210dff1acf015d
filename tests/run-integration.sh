#!/usr/bin/env bash
# Runs every tests/integration/test_*.sh (or those named) and prints one summary line. Logs go
# to $TEST_LOG (default $BUILD/log; with COOP_HUBS set, as make test runs it with 1 and then
# with the default, $BUILD/log-hubsN).
cd "$(dirname "$0")/.." || exit 2
LOG=${TEST_LOG:-${BUILD:-build}/log${COOP_HUBS:+-hubs$COOP_HUBS}}
mkdir -p "$LOG"
passed=0 failed=0 skipped=0 failures=""
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/integration/test_*.sh)
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    start=$(date +%s%N)
    timeout -k 5 300 bash "$t" >"$LOG/$name.log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 )); secs=$((ms / 1000)).$((ms % 1000 / 100))
    case $rc in
        0)  passed=$((passed + 1)); echo "PASS $name (${secs}s)" ;;
        77) skipped=$((skipped + 1)); echo "SKIP $name: $(tail -n 1 "$LOG/$name.log")" ;;
        *)  failed=$((failed + 1)); failures="$failures $name"
            echo "FAIL $name (status $rc, ${secs}s); last lines of $LOG/$name.log:"
            tail -n 15 "$LOG/$name.log" | sed 's/^/    /' ;;
    esac
done
echo "integration${COOP_HUBS:+ (COOP_HUBS=$COOP_HUBS)}: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
