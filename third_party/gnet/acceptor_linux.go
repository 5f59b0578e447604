// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

package gnet

import "golang.org/x/sys/unix"

// acceptRetry reports whether an accept error concerns only the connection
// being accepted, so that the next one may be taken (pace patch). accept(2)
// on Linux passes a pending network error of the new connection on, and
// says to treat these like EAGAIN and retry; EPERM is a firewall refusing
// the connection. Stock gnet stopped the whole engine on them.
func acceptRetry(err error) bool {
	switch err {
	case unix.ENETDOWN, unix.EPROTO, unix.ENOPROTOOPT, unix.EHOSTDOWN, unix.ENONET,
		unix.EHOSTUNREACH, unix.EOPNOTSUPP, unix.ENETUNREACH, unix.EPERM:
		return true
	}
	return false
}
