# A Ruby server with a Thread per connection over TCPServer, for test_ruby.sh.
#
#     ruby digest_server.rb PORT
#
# Listens on 127.0.0.1:PORT and prints "listening on PORT". Each connection gets a Thread that
# reads requests, a line with a length N and then N bytes, and answers each with a line
# holding the SHA-256 of those bytes in hex and then the bytes themselves (lines end with
# CRLF), until the client closes the connection (digest_client.py is the client). On SIGTERM
# it prints "stopped: connections=N requests=N" (a request is counted before its answer is
# written, so a client that has read every answer has been counted) and exits 0.
# digest/sha2 now: Digest::SHA256 loaded on first use by many threads at once can fail
# ("Digest::Base cannot be directly inherited in Ruby").
require "digest/sha2"
require "socket"

$stdout.sync = true
server = TCPServer.new("127.0.0.1", Integer(ARGV[0]))
counts = { connections: 0, requests: 0 }
counts_lock = Mutex.new
count = ->(key) { counts_lock.synchronize { counts[key] += 1 } }

serve = lambda do |sock|
  while (line = sock.gets)
    size = Integer(line)
    body = sock.read(size)
    break unless body && body.bytesize == size

    count.(:requests)
    sock.write(Digest::SHA256.hexdigest(body), "\r\n", body)
  end
rescue SystemCallError, IOError => e
  warn "connection: #{e.class}: #{e.message}"
ensure
  sock.close
end

trap("TERM") { exit 0 }
puts "listening on #{server.addr[1]}"
begin
  loop do
    sock = server.accept
    count.(:connections)
    Thread.new(sock, &serve)
  end
ensure
  puts "stopped: connections=#{counts[:connections]} requests=#{counts[:requests]}"
end
