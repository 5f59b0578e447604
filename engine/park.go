package engine

import (
	"context"
	"net"
	"os"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// link is one side of a proxied exchange: a gnet connection that can be
// parked. gnet has no way to stop reading a socket, so to apply
// backpressure pace parks the connection: it duplicates the descriptor,
// saves what gnet had already read, and lets gnet close its copy. The
// socket stays open in the kernel, whose buffers fill and whose TCP window
// then stops the peer. Unparking enrolls the duplicate into the same loop
// again; the saved bytes are served before anything newly read.
//
// All methods: loop only.
type link struct {
	c        gnet.Conn // nil while parked
	pend     []byte    // bytes read before parking, served first
	poff     int
	fd       int // duplicate descriptor while parked, else -1
	parked   bool
	resuming bool // an enroll is in flight
}

// input returns the bytes available to parse: saved bytes first, then what
// gnet has buffered. Valid only until consume or the callback returns.
func (l *link) input() []byte {
	if l.poff < len(l.pend) {
		// A message may go on past the saved bytes (a head or chunk
		// line cut at the park): join what gnet read since.
		if l.c != nil && l.c.InboundBuffered() > 0 {
			l.save(l.c)
			_, _ = l.c.Discard(-1)
		}
		return l.pend[l.poff:]
	}
	if l.c == nil {
		return nil
	}
	b, _ := l.c.Peek(-1)
	return b
}

// consume marks n bytes of the last input as used.
func (l *link) consume(n int) {
	if l.poff < len(l.pend) {
		l.poff += n
		if l.poff >= len(l.pend) {
			l.pend, l.poff = l.pend[:0], 0
		}
		return
	}
	if l.c != nil && n > 0 {
		_, _ = l.c.Discard(n)
	}
}

// save appends what c has buffered to pend, after moving pend's unread
// bytes to its front. The caller discards them from c if c lives on.
func (l *link) save(c gnet.Conn) {
	b, _ := c.Peek(-1)
	if l.poff > 0 {
		l.pend = append(l.pend[:0], l.pend[l.poff:]...)
		l.poff = 0
	}
	l.pend = append(l.pend, b...)
}

// buffered is the number of unread bytes held for this link.
func (l *link) buffered() int {
	n := len(l.pend) - l.poff
	if l.c != nil {
		n += l.c.InboundBuffered()
	}
	return n
}

// park detaches l.c, which must be the connection whose callback is
// running; the caller returns the action park returns. On failure
// (dup failed) it returns gnet.None and false and nothing changes.
func (l *link) park() (gnet.Action, bool) {
	fd, err := l.c.Dup()
	if err != nil {
		return gnet.None, false
	}
	unix.CloseOnExec(fd)
	if l.c.InboundBuffered() > 0 {
		l.save(l.c)
		_, _ = l.c.Discard(-1)
	}
	l.fd = fd
	l.parked = true
	l.c = nil
	return gnet.Close, true
}

// unpark enrolls the parked descriptor into el again; owner becomes the
// new connection's context and gets OnOpen. fail runs on the loop if
// enrolling fails, after the descriptor was closed.
func (l *link) unpark(lp *loop, owner any, fail func()) {
	if !l.parked || l.resuming {
		return
	}
	l.resuming = true
	fd := l.fd
	l.fd = -1
	e := lp.e
	e.transit.Add(1) // FileConn's and Enroll's duplicates; see fdsInUse
	go func() {
		defer e.transit.Add(-1)
		f := os.NewFile(uintptr(fd), "pace-parked")
		nc, err := net.FileConn(f)
		_ = f.Close()
		if err == nil && nc.RemoteAddr() == nil {
			// The peer reset the socket while it was parked: gnet's
			// Enroll would panic on the nil address in its worker pool,
			// leaking its duplicate and never answering.
			_ = nc.Close()
			err = errPeerGone
		} else if err == nil {
			var ch <-chan gnet.RegisteredResult
			ch, err = lp.el.Enroll(gnet.NewContext(context.Background(), owner), nc)
			if err == nil {
				err = enrolled(ch)
			}
			_ = nc.Close() // gnet holds its own duplicate now, or failed
		}
		if err != nil {
			lp.exec(fail)
		}
	}()
}

// enrolled waits for the result of an Enroll. A channel closed with no
// result means gnet's worker panicked (it recovers and closes it): that
// is a failure too, or the connection would be waited for forever. Blocks.
func enrolled(ch <-chan gnet.RegisteredResult) error {
	r, ok := <-ch
	if !ok {
		return errEnrollLost
	}
	return r.Err
}

// reopened is called from OnOpen with the enrolled connection.
func (l *link) reopened(c gnet.Conn) {
	l.c = c
	l.parked = false
	l.resuming = false
}

// release closes a parked descriptor that will not be unparked.
func (l *link) release() {
	if l.fd >= 0 {
		_ = unix.Close(l.fd)
		l.fd = -1
	}
	l.parked = false
}
