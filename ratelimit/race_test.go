//go:build race

package ratelimit

// raceEnabled: the race detector changes allocation sizes and speed, so the
// memory test skips itself.
const raceEnabled = true
