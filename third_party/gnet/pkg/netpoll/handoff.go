// Copyright (c) 2026 The pace authors. Licensed under the Apache License,
// Version 2.0, as the rest of gnet.

//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package netpoll

import "sync/atomic"

// handOffs counts HandOff calls; a loop that sees it change yields before
// it blocks.
var handOffs atomic.Uint64

// HandOff makes every loop yield before its next blocking wait (pace). A
// loop calls it after it makes a goroutine runnable that must not wait for
// the loop's next yield (see yieldEvery in poller_epoll_default.go):
// Enroll's caller, which the loop wakes when the connection is open, or a
// worker the loop hands a job to. It may be called from any goroutine, but
// only a loop's call is useful. Only the default epoll poller acts on it;
// the others yield after every empty poll, as stock gnet does, which
// serves the same end.
func HandOff() { handOffs.Add(1) }
