// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

//go:build dragonfly || freebsd

package socket

import "golang.org/x/sys/unix"

func accept4(fd, flags int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, flags)
}
