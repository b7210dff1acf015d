#!/usr/bin/env bash
# Debian's Ruby 3.1 running digest_server.rb: TCPServer and a Thread per connection (each a
# native thread under Ruby's global VM lock). digest_client.py opens 100 concurrent
# connections and sends 4 requests on each, 1 B to 192 KiB: every answer must carry the
# payload's SHA-256 and the payload itself, byte for byte. SIGTERM (a Ruby trap) must end the
# server with status 0 and its count of every connection and request. Natively Ruby has ~101
# OS threads; under cooprun one.
#
# Under coop every greenlet has libruby's execution context (ruby_current_ec, a __thread
# reached through __tls_get_addr) to itself.
# shellcheck source=tests/realworld/digest_lib.sh
source "$(dirname "$0")/digest_lib.sh"
need ruby ruby
need "$PYTHON" python3
need_library

# Runtime threads allowed under coop: none. TCPServer.new resolves "127.0.0.1" itself (a
# numeric address: no getaddrinfo, so coop's pool stays unstarted).
ALLOWED_RUNTIME=0
digest_test "ruby (Thread per connection, TCPServer)" "$(pkg_version ruby3.1)" 0 \
    ruby "$REALWORLD/digest_server.rb"
