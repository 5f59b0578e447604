// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

// pace patch: accept4 without the getsockopt(SO_PROTOCOL) that
// x/sys/unix.Accept4 makes for every AF_INET peer (to tell L2TP sockets
// apart, which a TCP listener never returns): one system call fewer per
// connection.

package socket

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func accept4(fd, flags int) (int, unix.Sockaddr, error) {
	var rsa unix.RawSockaddrAny
	l := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)), uintptr(flags), 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	nfd := int(r)
	switch rsa.Addr.Family {
	case unix.AF_INET:
		pp := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		p := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return nfd, &unix.SockaddrInet4{Port: int(p[0])<<8 | int(p[1]), Addr: pp.Addr}, nil
	case unix.AF_INET6:
		pp := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		p := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return nfd, &unix.SockaddrInet6{Port: int(p[0])<<8 | int(p[1]), ZoneId: pp.Scope_id, Addr: pp.Addr}, nil
	}
	if sa, err := unix.Getpeername(nfd); err == nil {
		return nfd, sa, nil
	}
	return nfd, &unix.SockaddrUnix{}, nil
}
