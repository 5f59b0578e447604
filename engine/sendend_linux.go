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
// carries, with MSG_MORE, so that the kernel holds their last partial
// segment, and when it took all of them, shuts the writing side at once:
// the FIN joins that segment, which leaves now. The close that follows
// only releases the socket; the reset it sends if the client sent more
// meanwhile no longer catches a response held for the FIN (a response
// the peer's window still holds back is dropped by it, as it would be
// after a plain write). It returns the bytes written; 0 on any error,
// which the caller's gnet write then meets and handles. Loop.
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
