// Package upstream owns pace's backends: the [upstreams] section of
// proxy.toml, round-robin selection, passive health (a backend that fails
// FailThreshold times in a row is skipped for Cooldown, then takes one
// probe request; a success brings it back), and dialing.
//
// Concurrency: a Balancer and its Backends are shared by every event loop.
// Pick, Success and Failure are safe for concurrent use and lock-free
// (atomics only), so they may be called on an event loop. Dial blocks for
// up to ConnectTimeout and must never be called on an event loop; the
// engine calls it from a short-lived goroutine and hands the connection
// back to the loop.
//
// Idle keep-alive connections are not kept here: they belong to the event
// loop that owns them (see package engine), so that reusing one needs no
// lock.
package upstream
