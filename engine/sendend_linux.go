package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// endScratch is the vector and message header of sendEnd, held by the
// loop so that the system call allocates nothing.
type endScratch struct {
	msg unix.Msghdr
	iov [2]unix.Iovec
}

// sendEnd writes a and then b, the last bytes a client connection
// carries, with MSG_MORE, so that the kernel holds them (a partial
// segment), and when all of them went, shuts the writing side at once:
// the FIN joins the held segment and both leave now. The close that
// follows only releases the socket, and the reset it sends if the client
// sent more meanwhile comes after the response instead of discarding it.
// It returns the bytes written; 0 on any error, which the caller's gnet
// write then meets and handles. Loop.
func (l *loop) sendEnd(fd int, a, b []byte) int {
	x := &l.end
	n := 0
	for _, p := range [2][]byte{a, b} {
		if len(p) > 0 {
			x.iov[n].Base = &p[0]
			x.iov[n].SetLen(len(p))
			n++
		}
	}
	if n == 0 {
		return 0
	}
	x.msg.Iov = &x.iov[0]
	x.msg.SetIovlen(n)
	r, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&x.msg)), unix.MSG_MORE|unix.MSG_NOSIGNAL)
	*x = endScratch{} // no references to the buffers outlive the call
	if errno != 0 {
		return 0
	}
	if int(r) == len(a)+len(b) {
		_ = unix.Shutdown(fd, unix.SHUT_WR)
	}
	return int(r)
}
