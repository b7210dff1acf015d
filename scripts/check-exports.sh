#!/bin/sh
# Fails if the library exports any name that is neither an interposed libc function
# (a COOP_FN line of shim/surface.h) nor part of the documented coop_ API.
lib=${1:-build/libcoop.so}
here=$(dirname "$0")
allowed=$(sed -n 's/^COOP_FN([a-z]*, *\([A-Za-z0-9_]*\),.*/\1/p' "$here/../shim/surface.h")
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | while read -r name; do
    case "$name" in coop_version|coop_active) continue ;; esac
    echo "$allowed" | grep -qx "$name" || echo "$name"
done)
count=$(nm -D --defined-only "$lib" | wc -l)
if [ -n "$bad" ]; then
    echo "exports: FAIL, unexpected names: $bad"
    exit 1
fi
echo "exports: ok, $count names, all interposed libc functions or coop_ API"
