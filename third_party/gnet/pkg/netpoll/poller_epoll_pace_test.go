// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

//go:build linux && !poll_opt

package netpoll

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// A Trigger after Close fails and writes nothing: the eventfd's number
// may belong to a new descriptor by then (here, a pipe's write end).
func TestPaceTriggerAfterClose(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	efd := p.efd
	_ = p.Close()
	var r, w *os.File
	var pipes []*os.File
	defer func() {
		for _, f := range pipes {
			_ = f.Close()
		}
	}()
	for i := 0; i < 64 && w == nil; i++ {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, pr, pw)
		if int(pw.Fd()) == efd {
			r, w = pr, pw
		}
	}
	if w == nil {
		t.Skipf("eventfd number %d was not reused by a pipe's write end", efd)
	}
	if err := p.Trigger(0, func(any) error { return nil }, nil); err == nil {
		t.Error("Trigger after Close succeeded")
	}
	rfd := int(r.Fd()) // Fd makes it blocking: once, before SetNonblock
	if err := unix.SetNonblock(rfd, true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, _ := unix.Read(rfd, buf); n > 0 {
		t.Fatalf("Trigger after Close wrote %d bytes to descriptor %d, now a pipe", n, efd)
	}
}
