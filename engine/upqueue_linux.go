package engine

import "golang.org/x/sys/unix"

// upQueued returns the request bytes queued to up and not yet taken by
// the backend: in gnet's output buffer, and in the socket's send queue,
// sent but not acknowledged or not yet sent (SIOCOUTQ); -1 when it
// cannot tell. One ioctl: for the end of a write burst, not per write.
// Loop.
func upQueued(up *upconn) int32 {
	if up == nil || up.c == nil {
		return -1
	}
	n, err := unix.IoctlGetInt(up.c.Fd(), unix.SIOCOUTQ)
	if err != nil {
		return -1
	}
	return clamp32(n + up.c.OutboundBuffered())
}
