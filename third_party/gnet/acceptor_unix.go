// Copyright (c) 2021 The Gnet Authors. All rights reserved.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package gnet

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"github.com/panjf2000/gnet/v2/pkg/socket"
)

func (el *eventloop) accept0(fd int, _ netpoll.IOEvent, _ netpoll.IOFlags) error {
	for {
		nfd, sa, err := socket.Accept(fd)
		switch err {
		case nil:
		case unix.EAGAIN: // the Accept queue has been drained out, we can return now
			return nil
		case unix.EINTR, unix.ECONNRESET, unix.ECONNABORTED:
			// ECONNRESET or ECONNABORTED could indicate that a socket
			// in the Accept queue was closed before we Accept()ed it.
			// It's a silly error, let's retry it.
			continue
		default:
			el.getLogger().Errorf("Accept() failed due to error: %v", err)
			return errors.ErrAcceptSocket
		}

		remoteAddr := socket.SockaddrToTCPOrUnixAddr(sa)
		network := el.listeners[fd].network
		if opts := el.engine.opts; opts.TCPKeepAlive > 0 && network == "tcp" &&
			(runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "dragonfly") {
			// TCP keepalive options are not inherited from the listening socket
			// on platforms other than Linux, FreeBSD, or DragonFlyBSD.
			// We therefore need to set them on the accepted socket explicitly.
			//
			// Check out https://github.com/nginx/nginx/pull/337 for details.
			if err = setKeepAlive(
				nfd,
				true,
				opts.TCPKeepAlive,
				opts.TCPKeepInterval,
				opts.TCPKeepCount); err != nil {
				el.getLogger().Errorf("failed to set TCP keepalive on fd=%d: %v", fd, err)
			}
		}

		el := el.engine.eventLoops.next(remoteAddr)
		c := newStreamConn(network, nfd, el, sa, el.listeners[fd].addr, remoteAddr)
		err = el.poller.Trigger(queue.HighPriority, el.register, c)
		if err != nil {
			el.getLogger().Errorf("failed to enqueue the accepted socket fd=%d to poller: %v", c.fd, err)
			_ = unix.Close(nfd)
			c.release()
		}
	}
}

func (el *eventloop) accept(fd int, ev netpoll.IOEvent, flags netpoll.IOFlags) error {
	network := el.listeners[fd].network
	if network == "udp" {
		return el.readUDP(fd, ev, flags)
	}
	// pace: take up to maxAcceptBatch connections per readiness event, as
	// HAProxy's maxaccept and nginx's multi_accept do. A level-triggered
	// listener is reported once per pass over the ready list, and a pass
	// over thousands of busy connections is long.
	for i := 0; i < maxAcceptBatch; i++ {
		nfd, sa, err := socket.Accept(fd)
		switch err {
		case nil:
		case unix.EAGAIN:
			return nil
		case unix.EINTR, unix.ECONNRESET, unix.ECONNABORTED:
			// ECONNRESET or ECONNABORTED could indicate that a socket
			// in the Accept queue was closed before we Accept()ed it.
			// It's a silly error, let's retry it.
			continue
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// pace: out of descriptors or memory. Stock gnet stopped the
			// whole engine here, closing every connection; this loop
			// stops accepting for a while instead, as nginx does, and
			// what arrives meanwhile waits in the kernel's backlog.
			el.getLogger().Errorf("Accept() failed due to error: %v; not accepting for %v", err, acceptPause)
			return el.pauseAccept(fd)
		default:
			if acceptRetry(err) {
				continue
			}
			el.getLogger().Errorf("Accept() failed due to error: %v", err)
			return errors.ErrAcceptSocket
		}

		remoteAddr := socket.SockaddrToTCPOrUnixAddr(sa)
		if opts := el.engine.opts; opts.TCPKeepAlive > 0 && network == "tcp" &&
			(runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "dragonfly") {
			// TCP keepalive options are not inherited from the listening socket
			// on platforms other than Linux, FreeBSD, or DragonFlyBSD.
			// We therefore need to set them on the accepted socket explicitly.
			//
			// Check out https://github.com/nginx/nginx/pull/337 for details.
			if err = setKeepAlive(
				nfd,
				true,
				opts.TCPKeepAlive,
				opts.TCPKeepInterval,
				opts.TCPKeepCount); err != nil {
				el.getLogger().Errorf("failed to set TCP keepalive on fd=%d: %v", fd, err)
			}
		}

		c := newStreamConn(network, nfd, el, sa, el.listeners[fd].addr, remoteAddr)
		c.sole = true // pace: see eventloop.close
		// An error here concerns this connection only (stock gnet returned
		// it to the poller, which ignores it): the batch goes on, unless
		// the handler asked for a shutdown.
		if err = el.register0(c); err == errors.ErrEngineShutdown {
			return err
		}
	}
	return nil
}

// acceptPause is how long a loop stops accepting after running out of
// descriptors or memory (pace patch).
const acceptPause = 100 * time.Millisecond

// pauseAccept stops watching listener fd and watches it again after
// acceptPause (pace patch). If it cannot stop watching it, it returns
// ErrAcceptSocket, which stops the engine as stock gnet did: a
// level-triggered listener would fail again on every pass. Loop only.
func (el *eventloop) pauseAccept(fd int) error {
	if err := el.poller.Delete(fd); err != nil {
		el.getLogger().Errorf("failed to pause accepting on fd=%d: %v", fd, err)
		return errors.ErrAcceptSocket
	}
	el.resumeAcceptAfter(fd, acceptPause)
	return nil
}

// resumeAcceptAfter watches listener fd again after d, from the loop, and
// tries again every acceptPause until the poller takes it (pace patch). On
// a closed poller (the engine stopped) Trigger fails and nothing happens.
// Any goroutine.
func (el *eventloop) resumeAcceptAfter(fd int, d time.Duration) {
	ln := el.listeners[fd]
	time.AfterFunc(d, func() {
		_ = el.poller.Trigger(queue.HighPriority, func(any) error {
			if ln.fd < 0 {
				return nil // closed meanwhile (CloseListeners): stay closed
			}
			if err := el.poller.AddRead(ln.pollAttachment, false); err != nil {
				el.getLogger().Errorf("failed to resume accepting on fd=%d: %v; trying again in %v", fd, err, acceptPause)
				el.resumeAcceptAfter(fd, acceptPause)
			}
			return nil
		}, nil)
	})
}

// maxAcceptBatch is how many connections accept takes from one listener per
// readiness event (pace patch). With one at a time, 10,000 connections
// arriving at once sat in the accept queue for seconds while each loop
// served the thousands it had (p99.9 up to 4 s); with 256 the queue was
// empty within the first second.
const maxAcceptBatch = 256
