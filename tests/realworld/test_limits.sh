#!/usr/bin/env bash
# What lies beyond an LD_PRELOAD library, with Debian's own programs (README, Limits):
#  - a setuid program (/usr/bin/su): the loader would ignore LD_PRELOAD, so cooprun refuses it:
#    status 126 and one line saying why.
#  - a static program (/sbin/ldconfig, static-pie): the loader never reads LD_PRELOAD; under
#    cooprun it runs exactly as natively, without coop (no statistics line with COOP_STATS=1).
#  - a Go program (Debian's go 1.19, linked with cgo, so its runtime starts its threads with
#    pthread_create): under cooprun those threads become greenlets, and the Go runtime puts
#    them to sleep with raw futex system calls, not through libc. Each such sleep blocks the
#    OS thread of the hub that runs it; the monitor hands that hub's other greenlets to
#    another hub or a spare thread (handoff), so the greenlet that will wake it still runs.
#    `cooprun -- go version` prints what it prints natively (it hung in half the runs on one
#    busy hub while the main greenlet could run only on hub 0's thread, where a Go thread
#    slept in futex waiting for it), and `go build` of a small program builds one that prints
#    what the one built natively prints. Every idle Go thread holds an OS thread in such a
#    sleep, so these runs take coop's default allowance of spare threads, not the tests' 2
#    (with 2, go build ran out and hung, saying so). Its hang guard is HANG_GUARD_S; Go
#    handles SIGTERM itself, so a hung run gets SIGKILL 5 s after timeout's SIGTERM (status
#    124 or 137). A Go server built with cgo (the net package) ends by SIGTERM, status 143,
#    natively and under coop (Go's runtime dies of it with raw system calls).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need_library


# --- setuid: refused ---
su=/usr/bin/su
[ -u "$su" ] || skip "$su is not setuid here"
"$COOPRUN" -- "$su" --help >"$TMP/su.out" 2>"$TMP/su.err"
status=$?
note "setuid: cooprun -- $su: status $status: $(cat "$TMP/su.err")"
((status == 126)) || fail "setuid: cooprun -- $su exited with status $status, expected 126 (refused)"
grep -q 'set-user-ID' "$TMP/su.err" || fail "setuid: no reason given: $(cat "$TMP/su.err")"

# --- static: runs without coop ---
ldconfig=/sbin/ldconfig
[ -x "$ldconfig" ] || skip "no $ldconfig here"
if readelf -l "$ldconfig" 2>/dev/null | grep -q 'program interpreter'; then
    skip "$ldconfig is not static here"
fi
"$ldconfig" -p >"$TMP/ldconfig.native" 2>&1 || fail "static: $ldconfig -p failed natively"
COOP_STATS=1 "$COOPRUN" -- "$ldconfig" -p >"$TMP/ldconfig.coop" 2>"$TMP/ldconfig.coop.err"
status=$?
((status == 0)) || fail "static: cooprun -- $ldconfig -p exited with status $status"
cmp -s "$TMP/ldconfig.native" "$TMP/ldconfig.coop" || fail "static: $ldconfig -p printed something else under cooprun"
if grep -q '^coop:' "$TMP/ldconfig.coop.err"; then
    fail "static: coop ran inside a static program?: $(cat "$TMP/ldconfig.coop.err")"
fi
note "static: $ldconfig -p ran under cooprun as natively, without coop (no statistics printed)"

# --- Go: runs, its futex sleeps handed off ---
go_result="not installed"
if go=$(command -v go); then
    unset COOP_MAX_SPARES
    go=$(readlink -f "$go")
    out=$(timeout -k 5 20 "$go" version 2>&1) || fail "go: '$go version' failed natively: $out"
    note "go: natively: $out"
    for hubs in 1 default; do
        coop_out=$( ([ $hubs = default ] || export COOP_HUBS=$hubs; timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$go" version) 2>&1)
        status=$?
        ((status != 124 && status != 137)) ||
            fail "go: cooprun -- go version on $hubs hub(s) hung: still running after $HANG_GUARD_S s (status $status: 124 ended by SIGTERM, 137 killed 5 s later): $coop_out"
        ((status == 0)) || fail "go: cooprun -- go version on $hubs hub(s): status $status: $coop_out"
        [ "$coop_out" = "$out" ] || fail "go: on $hubs hub(s) it printed '$coop_out', natively '$out'"
    done
    # More of the go command: a build (goroutines running its actions, the compiler and linker
    # run as processes, the build cache); the program built is static, so it runs without coop.
    mkdir -p "$TMP/gohello"
    printf 'module gohello\n\ngo 1.19\n' >"$TMP/gohello/go.mod"
    cat >"$TMP/gohello/main.go" <<'GO'
package main

import (
	"fmt"
	"sync"
)

func main() {
	var wg sync.WaitGroup
	sums := make([]int, 8)
	for i := range sums {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 1000000; j++ {
				sums[i] += (i + j) % 7
			}
		}(i)
	}
	wg.Wait()
	fmt.Println(sums)
}
GO
    for how in native coop; do
        run=("$COOPRUN" --)
        [ $how = coop ] || run=()
        (cd "$TMP/gohello" && GOCACHE="$TMP/gocache.$how" GOFLAGS=-mod=mod timeout -k 5 "$HANG_GUARD_S" \
            "${run[@]}" "$go" build -o "$TMP/gohello/hello.$how" .) >"$TMP/gobuild.$how" 2>&1
        status=$?
        ((status == 0)) || fail "go: go build ($how): status $status: $(tail -n 5 "$TMP/gobuild.$how")"
    done
    built=$("$TMP/gohello/hello.coop")
    [ "$built" = "$("$TMP/gohello/hello.native")" ] ||
        fail "go: the program built under cooprun printed '$built', the one built natively '$("$TMP/gohello/hello.native")'"
    # A Go server (the net package: linked with cgo, so it runs under coop) ends by SIGTERM
    # as natively, status 143: Go's runtime dies of the signal with raw system calls (see
    # test_thread_signals' die-as-go); under coop it exited with status 2 before.
    mkdir -p "$TMP/goserver"
    printf 'module goserver\n\ngo 1.19\n' >"$TMP/goserver/go.mod"
    cat >"$TMP/goserver/main.go" <<'GO'
package main

import (
	"fmt"
	"net"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println("listening")
	for {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}
}
GO
    (cd "$TMP/goserver" && GOCACHE="$TMP/gocache.native" GOFLAGS=-mod=mod timeout -k 5 "$HANG_GUARD_S" \
        "$go" build -o "$TMP/goserver/server" .) >"$TMP/goserver.build" 2>&1 ||
        fail "go: building the server: $(tail -n 5 "$TMP/goserver.build")"
    if file "$TMP/goserver/server" | grep -q "dynamically linked"; then
        for how in native coop; do
            run=("$COOPRUN" --)
            [ $how = coop ] || run=()
            out="$TMP/goserver.$how"
            timeout -k 5 "$HANG_GUARD_S" "${run[@]}" "$TMP/goserver/server" >"$out" 2>&1 &
            pid=$!
            until grep -qs listening "$out" || ! kill -0 $pid 2>/dev/null; do sleep 0.05; done
            kill -TERM $pid 2>/dev/null
            wait $pid
            status=$?
            ((status == 128 + 15)) || fail "go: the server ($how) after SIGTERM: status $status, expected 143: $(cat "$out")"
        done
        note "go: a server (the net package, cgo) ends by SIGTERM natively and under coop (status 143)"
    else
        note "go: the server built is static here (no cgo): its SIGTERM is not checked under coop"
    fi
    go_result="runs, and builds (the runtime's raw futex sleeps block a hub's thread; its other greenlets are handed off)"
    note "go: under cooprun, on one hub and on the default: $coop_out; go build of a program with 8 goroutines: it printed $built"
fi

matrix "limits: su (setuid), ldconfig (static), go (Go runtime)" \
    "$(pkg_version util-linux) / $(pkg_version libc-bin) / $(pkg_version golang-1.19-go)" \
    "-" "-" "su refused (126); ldconfig runs without coop; go: $go_result"
echo "PASS: setuid refused, static program untouched, Go: $go_result"
