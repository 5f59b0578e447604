package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to listen on (port 0 picks a free port)")
	name := flag.String("name", "backend1", "name reported in bodies and the X-Backend-Name header")
	quiet := flag.Bool("quiet", false, "print nothing: no startup line, no net/http error log")
	fast := flag.Bool("fast", false, "answer every request like GET / from gnet event loops (for load tests; no other endpoints)")
	loops := flag.Int("loops", 1, "event loops in -fast mode")
	flag.Parse()
	if *fast {
		os.Exit(runFast(*listen, *name, *loops, *quiet))
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler:           newHandler(*name),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	if *quiet {
		srv.ErrorLog = log.New(io.Discard, "", 0)
	} else {
		fmt.Printf("backend %s listening on %s\n", *name, ln.Addr())
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	os.Exit(untilSignal(errc, srv.Shutdown))
}

// untilSignal waits for SIGINT or SIGTERM, then gives stop five seconds
// to shut the server down, and returns 0; a serve error first returns 1.
func untilSignal(errc <-chan error, stop func(context.Context) error) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	select {
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelStop()
	stop(sctx)
	return 0
}

// runFast runs the -fast server until SIGINT or SIGTERM and returns the
// exit status.
func runFast(listen, name string, loops int, quiet bool) int {
	s := newFastServer(name)
	errc := make(chan error, 1)
	go func() { errc <- s.run(listen, loops) }()
	select {
	case addr := <-s.addr:
		if !quiet {
			fmt.Printf("backend %s listening on %s (fast)\n", name, addr)
		}
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		return 1
	}
	return untilSignal(errc, s.Stop)
}
