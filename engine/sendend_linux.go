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
// carries, with MSG_MORE: the kernel holds them (a partial segment) until
// the close or shutdown the caller makes next, whose FIN then leaves in
// the same segment. It returns the bytes written; 0 on any error, which
// the caller's gnet write then meets and handles. Loop.
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
	return int(r)
}
