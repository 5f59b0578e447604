//go:build !linux

package engine

// upQueued cannot read a socket's send queue here: -1, so that
// response_timeout runs from pace's last body write. Loop.
func upQueued(*upconn) int32 { return -1 }
