#!/usr/bin/env bash
# Debian's default JRE (OpenJDK 17, HotSpot) running DigestServer.java from source (the JRE
# compiles it in memory at start: `java DigestServer.java`, no JDK needed): a ServerSocket and
# a Thread per connection. digest_client.py opens 100 concurrent connections and sends 4
# requests on each, 1 B to 192 KiB: every answer must carry the payload's SHA-256 and the
# payload itself, byte for byte. SIGTERM must run the shutdown hook, which prints the count of
# every connection and request, and end the JVM with status 143, as Java does. Natively the
# JVM has ~120 OS threads (GC, JIT compilers, the VM thread...); under cooprun one.
#
# Under coop every greenlet has HotSpot's current Thread (a __thread of libjvm.so, which the
# launcher loads with dlopen: dynamic TLS, through each greenlet's own DTV) to itself. The
# garbage collector is named (G1, the default on a machine of 2 CPUs and 2 GB) so that the run
# is the same on every machine.
# shellcheck source=tests/realworld/digest_lib.sh
source "$(dirname "$0")/digest_lib.sh"
need java default-jre-headless
need "$PYTHON" python3
need_library

# Runtime threads allowed under coop: none. The server binds a numeric address (no lookup)
# and reads no file through coop's pool.
ALLOWED_RUNTIME=0
jre_package=$(dpkg-query -S "$(readlink -f "$(command -v java)")" 2>/dev/null | cut -d: -f1)
digest_test "java (OpenJDK, Thread per connection)" "$(pkg_version "$jre_package")" 143 \
    java -XX:+UseG1GC -XX:ErrorFile="$TMP/hs_err_%p.log" "$REALWORLD/DigestServer.java"
