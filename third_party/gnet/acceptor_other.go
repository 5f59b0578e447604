// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package gnet

// acceptRetry reports whether an accept error concerns only the connection
// being accepted (pace patch; see acceptor_linux.go). None do here.
func acceptRetry(error) bool { return false }
