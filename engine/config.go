package engine

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"time"

	"github.com/pace-proxy/pace/config"
)

// Config is the [server] section of proxy.toml.
type Config struct {
	// Listen is the proxy's address. Empty means "0.0.0.0:8080".
	Listen string `toml:"listen"`
	// Workers is the number of gnet event loops. Zero means one per CPU
	// (GOMAXPROCS).
	Workers int `toml:"workers"`
	// MaxConnections caps open client connections; a connection accepted
	// beyond it is closed at once. Zero means 10000. pace also lowers it
	// at start-up to what the open-file limit allows (see README).
	MaxConnections int `toml:"max_connections"`
	// HeaderTimeout bounds the time to receive a whole request head, from
	// the connection's start or the head's first byte. Zero means 10s;
	// on expiry the client gets 408 and the connection is closed.
	HeaderTimeout config.Duration `toml:"header_timeout"`
	// IdleTimeout closes a keep-alive client connection that sends
	// nothing between requests. Zero means 60s.
	IdleTimeout config.Duration `toml:"idle_timeout"`
	// SendTimeout closes a client that reads none of its response for this
	// long while pace holds the rest back for it (nginx's send_timeout).
	// Zero means 60s.
	SendTimeout config.Duration `toml:"send_timeout"`
	// ShutdownTimeout bounds the graceful drain after SIGTERM/SIGINT.
	// Zero means 30s.
	ShutdownTimeout config.Duration `toml:"shutdown_timeout"`
	// ProxyHeader is the X-Proxy value sent to backends. Empty means "pace".
	ProxyHeader string `toml:"proxy_header"`
	// AccessLog writes one line per request at info level. False means
	// request lines are written only at debug level.
	AccessLog bool `toml:"access_log"`
	// BufferLimit is the backpressure high-water mark: when more than this
	// is waiting to be written to a slow peer, pace stops reading from the
	// other side. Zero means 256KiB.
	BufferLimit config.Size `toml:"buffer_limit"`
	// MaxHeaderSize bounds a request or response head. Zero means 64KiB.
	MaxHeaderSize config.Size `toml:"max_header_size"`
	// MaxURISize bounds the request target. Zero means 8KiB.
	MaxURISize config.Size `toml:"max_uri_size"`
	// MaxHeaderFields bounds the number of header fields. Zero means 100.
	MaxHeaderFields int `toml:"max_header_fields"`
	// DeferredAccept sets TCP_DEFER_ACCEPT on the listening sockets
	// (Linux; nginx's "listen ... deferred"): the kernel hands pace a
	// connection once its first bytes arrived, so a loop wakes once per
	// new connection instead of twice, and a connection that sends
	// nothing costs pace nothing until about a second has passed. False
	// (the default) accepts at once: with 10,000 connections opened at
	// once, deferring held many in the kernel for seconds (see README).
	DeferredAccept bool `toml:"deferred_accept"`
	// MaxBodySize bounds a request body (nginx's client_max_body_size): a
	// larger Content-Length gets 413 before any of the body is read or
	// sent on, and a chunked body gets 413 (or a reset, once a response
	// has started) as soon as its chunk sizes add up to more. Zero means
	// no bound.
	MaxBodySize config.Size `toml:"max_body_size"`
	// UnderscoresInHeaders forwards request fields whose names contain
	// '_'. False drops them, as nginx does by default: a backend mapping
	// names to CGI-style variables would read X_Forwarded_For as the
	// X-Forwarded-For pace sets.
	UnderscoresInHeaders bool `toml:"underscores_in_headers"`
}

// Validate checks the section and reports the first problem with its key.
func (c *Config) Validate() error {
	_, port, err := net.SplitHostPort(c.listen())
	if err != nil {
		return fmt.Errorf("server.listen: %q is not host:port: %v", c.Listen, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("server.listen: %q: the port must be a number from 1 to 65535", c.Listen)
	}
	if _, err := net.ResolveTCPAddr("tcp", c.listen()); err != nil {
		return fmt.Errorf("server.listen: %q: %v", c.Listen, err)
	}
	if c.Workers < 0 || c.Workers > 1024 {
		return fmt.Errorf("server.workers: must be between 1 and 1024 (0 for one per CPU), got %d", c.Workers)
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf("server.max_connections: must be >= 0, got %d", c.MaxConnections)
	}
	if c.MaxHeaderFields < 0 {
		return fmt.Errorf("server.max_header_fields: must be >= 0, got %d", c.MaxHeaderFields)
	}
	if c.MaxHeaderFields > maxHeaderFields {
		return fmt.Errorf("server.max_header_fields: must be at most %d, got %d", maxHeaderFields, c.MaxHeaderFields)
	}
	if c.BufferLimit != 0 && (c.BufferLimit < 4096 || c.BufferLimit > maxBufferLimit) {
		return fmt.Errorf("server.buffer_limit: must be from 4096 bytes to %d MiB (every slow client may hold that much), got %d", maxBufferLimit>>20, c.BufferLimit)
	}
	if c.MaxHeaderSize != 0 && (c.MaxHeaderSize < 1024 || c.MaxHeaderSize > maxHeaderSize) {
		return fmt.Errorf("server.max_header_size: must be from 1024 bytes to %d KiB, got %d", maxHeaderSize>>10, c.MaxHeaderSize)
	}
	if err := config.CheckTimeouts("server", []string{"header_timeout", "idle_timeout", "send_timeout", "shutdown_timeout"},
		c.HeaderTimeout, c.IdleTimeout, c.SendTimeout, c.ShutdownTimeout); err != nil {
		return err
	}
	if c.MaxBodySize < 0 {
		return fmt.Errorf("server.max_body_size: must be >= 0 (0 or absent: no limit), got %d", c.MaxBodySize)
	}
	for _, b := range []byte(c.ProxyHeader) {
		if b < 0x20 || b == 0x7f {
			return fmt.Errorf("server.proxy_header: control byte %#x not allowed", b)
		}
	}
	return nil
}

// Upper bounds, so that a slip of a unit cannot turn a per-connection
// buffer into gigabytes: nginx's own header buffers are kilobytes.
const (
	maxBufferLimit  = 64 << 20
	maxHeaderSize   = 1 << 20
	maxHeaderFields = 10000
)

// Address is the listen address in effect: Listen, or the default.
func (c *Config) Address() string { return c.listen() }

func (c *Config) listen() string {
	if c.Listen == "" {
		return "0.0.0.0:8080"
	}
	return c.Listen
}

func (c *Config) workers() int {
	if c.Workers == 0 {
		return runtime.GOMAXPROCS(0)
	}
	return c.Workers
}

func (c *Config) maxConns() int {
	if c.MaxConnections == 0 {
		return 10000
	}
	return c.MaxConnections
}

func (c *Config) proxyHeader() string {
	if c.ProxyHeader == "" {
		return "pace"
	}
	return c.ProxyHeader
}

func (c *Config) headerTimeout() time.Duration   { return c.HeaderTimeout.Or(10 * time.Second) }
func (c *Config) idleTimeout() time.Duration     { return c.IdleTimeout.Or(60 * time.Second) }
func (c *Config) sendTimeout() time.Duration     { return c.SendTimeout.Or(60 * time.Second) }
func (c *Config) shutdownTimeout() time.Duration { return c.ShutdownTimeout.Or(30 * time.Second) }
