// Copyright (c) 2026 pace authors. Apache License 2.0, as the rest of gnet.

//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package socket

// SetDeferAccept does nothing outside Linux (pace patch): TCP_DEFER_ACCEPT
// is Linux's; the BSDs' accept filters are configured differently.
func SetDeferAccept(_, _ int) error { return nil }
