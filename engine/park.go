package engine

import (
	"github.com/panjf2000/gnet/v2"
)

// link is one side of a proxied exchange: a gnet connection whose
// reading can be paused. To apply backpressure pace parks the connection:
// it stops reading it (Conn.PauseRead, a patch to gnet), so the socket's
// receive buffer fills and its TCP window stops the peer, while writes to
// it go on. Unparking reads it again; what gnet had already read stays in
// its buffer and is served first, after which the owner's resumed runs.
//
// All methods: loop only.
type link struct {
	c        gnet.Conn // nil once closed
	pend     []byte    // bytes saved from a connection gnet closed, served first
	poff     int
	parked   bool // reading is paused
	resuming bool // the owner's resumed is queued on the loop
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

// park stops reading l.c. It reports false, changing nothing, when the
// poller refused (out of memory); the caller then bounds what it holds by
// other means.
func (l *link) park() bool {
	if l.parked {
		return true
	}
	if l.c == nil || l.c.PauseRead() != nil {
		return false
	}
	l.parked = true
	return true
}

// unpark reads l.c again, and queues resumed on the loop to serve what
// gnet already holds (a newly readable socket wakes its callback by
// itself; bytes already read would not). resumed does not run if l.c is
// closed by then. If the poller refuses, the connection is closed: it
// could never be read again.
func (l *link) unpark(lp *loop, resumed func()) {
	if !l.parked || l.c == nil {
		return
	}
	c := l.c
	l.parked = false
	if c.ResumeRead() != nil {
		lp.closeConn(c)
		return
	}
	if l.resuming {
		return
	}
	l.resuming = true
	lp.exec(func() {
		l.resuming = false
		if l.c == c {
			resumed()
		}
	})
}
