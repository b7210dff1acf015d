// echo_go [-p PORT]: a goroutine-per-connection TCP echo server, the Go peer of
// tests/samples/echo_threads.c in the benchmarks (tests/bench/run.sh builds it with
// `go build`; it uses the standard library only).
//
// It listens on 127.0.0.1 (port 0 picks a free one), prints "listening on PORT", and gives
// each connection a goroutine that reads into a 16 KiB buffer and writes back what it read,
// until the client closes. Go's runtime multiplexes the goroutines over GOMAXPROCS OS threads
// with netpoll (edge-triggered epoll); GOMAXPROCS=1 makes the fair single-core comparison
// with coop. Go raises the soft descriptor limit to the hard one itself (Go 1.19 and later).
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

const bufferSize = 16 * 1024

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, bufferSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	port := flag.Int("p", 0, "TCP port on 127.0.0.1 (0: a free one)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: echo_go [-p PORT]")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo_go:", err)
		os.Exit(2)
	}
	fmt.Printf("listening on %d\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or memory: back off, as the C servers do.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}
