// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

package socket

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// accept4 returns the peer's address as the peer sees its own, for IPv4
// and IPv6, without asking the socket for its protocol.
func TestPaceAccept4Addr(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		host := "127.0.0.1:0"
		if network == "tcp6" {
			host = "[::1]:0"
		}
		l, err := net.Listen(network, host)
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		defer l.Close()
		c, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc, err := l.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var (
			nfd int
			sa  unix.Sockaddr
		)
		if cerr := rc.Control(func(fd uintptr) {
			nfd, sa, err = accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		}); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Fatalf("%s: accept4: %v", network, err)
		}
		_ = unix.Close(nfd)
		got := SockaddrToTCPOrUnixAddr(sa).String()
		if want := c.LocalAddr().String(); got != want {
			t.Errorf("%s: accept4 peer = %s, want %s", network, got, want)
		}
	}
}
