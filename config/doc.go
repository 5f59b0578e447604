// Package config reads proxy.toml into the sections that pace's packages
// own, and holds the small value types those sections share (Duration,
// Size).
//
// Each package (engine, upstream, ratelimit, metrics) declares its own
// section struct with its own defaults and validation; this package only
// decodes the file strictly — an unknown key, a key in the wrong case
// (TOML keys are case-sensitive) or a value of the wrong type is an error
// that names the key — and leaves meaning to the owners.
//
// Nothing here is used after start-up; nothing here is safe to mutate
// concurrently, and nothing needs to be.
package config
