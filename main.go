// Command pace is a high-performance HTTP/1.1 reverse proxy: round-robin
// load balancing with failover, per-client rate limiting, Prometheus
// metrics and graceful shutdown, on gnet event loops.
//
// Usage:
//
//	pace [-config proxy.toml] [-log-level info] [-check] [-version] [-cpuprofile FILE] [-pprof ADDR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on the opt-in -pprof listener
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pace-proxy/pace/config"
	"github.com/pace-proxy/pace/engine"
	"github.com/pace-proxy/pace/metrics"
	"github.com/pace-proxy/pace/ratelimit"
	"github.com/pace-proxy/pace/upstream"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// fileConfig is proxy.toml: each section belongs to the package that uses it.
type fileConfig struct {
	Server    engine.Config    `toml:"server"`
	Upstreams upstream.Config  `toml:"upstreams"`
	RateLimit ratelimit.Config `toml:"rate_limit"`
	Metrics   metrics.Config   `toml:"metrics"`
}

func main() {
	os.Exit(run())
}

// defaultGOGC is the garbage collector's target unless $GOGC says
// otherwise. A proxied request allocates nothing, so the collector only
// runs as connections come and go; at 10,000 connections the live heap
// is ~25 MB and Go's default of 100 let it reach ~45 MB between cycles
// (peak RSS 64-65 MB in bench/load.sh --c10k). At 50 the peak was 52-55
// MB with the same req/s.
const defaultGOGC = 50

func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
}

func run() int {
	var (
		cfgPath  = flag.String("config", "proxy.toml", "configuration file")
		check    = flag.Bool("check", false, "validate the configuration, print it and exit")
		showVer  = flag.Bool("version", false, "print the version and exit")
		logLevel = flag.String("log-level", "", "debug, info, warn or error (default $PACE_LOG or info)")
		cpuProf  = flag.String("cpuprofile", "", "write a CPU profile to this file until exit")
		pprofAt  = flag.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off by default")
	)
	flag.BoolVar(check, "t", false, "same as -check (nginx -t)")
	flag.Parse()
	if flag.NArg() > 0 {
		// "pace -check other.toml" would check ./proxy.toml and say it
		// is valid: refuse, rather than act on another file.
		fmt.Fprintf(os.Stderr, "pace: unexpected argument %q: name a configuration file with -config FILE\n", flag.Arg(0))
		return 2
	}
	if *showVer {
		fmt.Println("pace", version)
		return 0
	}
	lvlName := *logLevel
	if lvlName == "" {
		lvlName = os.Getenv("PACE_LOG")
	}
	if lvlName == "" {
		// The original manual (and its systemd unit) set RUST_LOG.
		lvlName = rustLogLevel(os.Getenv("RUST_LOG"))
	}
	level, err := parseLevel(lvlName)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pace:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	setGCPercent()

	*cfgPath = configPath(*cfgPath)
	if !configSet() && *cfgPath != manualConfig {
		if _, err := os.Stat(manualConfig); err == nil {
			log.Warn("reading ./proxy.toml, not the original manual's config/proxy.toml: give -config config/proxy.toml to use that one", "config", *cfgPath)
		}
	}
	var fc fileConfig
	if err := config.Load(*cfgPath, &fc); err != nil {
		fmt.Fprintf(os.Stderr, "pace: %s: %v\n", *cfgPath, err)
		if errors.Is(err, fs.ErrNotExist) && !configSet() {
			fmt.Fprintf(os.Stderr, "pace: give one with -config FILE (deploy/proxy.toml is an example), or run pace where its proxy.toml is\n")
		}
		return 1
	}
	for _, v := range []interface{ Validate() error }{&fc.Server, &fc.Upstreams, &fc.RateLimit, &fc.Metrics} {
		if err := v.Validate(); err != nil {
			fmt.Fprintf(os.Stderr, "pace: %s: %v\n", *cfgPath, err)
			return 1
		}
	}
	if err := selfBackend(fc.Server.Listen, fc.Upstreams.Backends); err != nil {
		fmt.Fprintf(os.Stderr, "pace: %s: %v\n", *cfgPath, err)
		return 1
	}
	unresolved := unresolvedBackends(fc.Upstreams.Backends, time.Second)
	if *check {
		// Bind the address as a start would, so that -check also catches
		// an address this host does not have or a port it may not use.
		// In use is only a warning: -check is run next to the pace it
		// is about to replace.
		inUse := ""
		if err := engine.CheckListen(fc.Server.Address()); err != nil {
			if !errors.Is(err, syscall.EADDRINUSE) {
				fmt.Fprintf(os.Stderr, "pace: %s: server.listen: %v\n", *cfgPath, err)
				return 1
			}
			inUse = fmt.Sprintf("%s is in use now (by the pace this config is for? a start would fail until it stops)", fc.Server.Address())
		}
		printConfig(*cfgPath, &fc)
		for _, u := range unresolved {
			fmt.Printf("  warning: %s\n", u)
		}
		if inUse != "" {
			fmt.Printf("  warning: %s\n", inUse)
		}
		return 0
	}
	for _, u := range unresolved {
		log.Warn("backend does not resolve now; pace resolves it again at each dial", "err", u)
	}

	e, err := engine.New(engine.Options{Server: fc.Server, Upstreams: fc.Upstreams, RateLimit: fc.RateLimit, Metrics: fc.Metrics, Log: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pace: %v\n", err)
		return 1
	}
	procs := spareProc(e.Workers(), runtime.NumCPU())
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pace:", err)
			return 1
		}
		_ = pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if *pprofAt != "" {
		go func() { log.Warn("pprof listener stopped", "err", http.ListenAndServe(*pprofAt, nil)) }()
	}

	rl := fc.RateLimit.WithDefaults()
	limit := "off"
	if rl.IsEnabled() {
		limit = fmt.Sprintf("%d per %ds by %s", rl.MaxRequests, rl.WindowSeconds, rl.KeyExtractor)
	}
	metricsAt := "off"
	if fc.Metrics.On() {
		metricsAt = fc.Metrics.Path()
	}
	if err := e.CheckListen(); err != nil {
		log.Error("cannot listen", "err", err)
		return 1
	}
	log.Info("pace starting", "version", version, "config", *cfgPath, "listen", e.Addr(), "workers", e.Workers(), "procs", procs,
		"backends", strings.Join(fc.Upstreams.Backends, ","), "max_retries", fc.Upstreams.Retries(),
		"rate_limit", limit, "metrics", metricsAt)

	// Signals are caught before the port opens: one sent as soon as
	// pace answers must find the handlers in place.
	// SIGQUIT is nginx's graceful stop (nginx -s quit); its default
	// action would kill pace with a goroutine dump, dropping every
	// request in flight.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	// SIGHUP's default action would kill pace on the spot, dropping
	// every request in flight; nginx users send it to reload. pace
	// cannot reload yet: it says so and goes on serving. SIGUSR1 is
	// nginx's "reopen logs" (pace logs to stderr: nothing to reopen) and
	// HAProxy's soft stop; SIGUSR2 nginx's binary upgrade. Neither may
	// do something else than the operator meant: each is logged.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)

	runErr := make(chan error, 1)
	go func() { runErr <- e.Run() }()

wait:
	for {
		select {
		case err := <-runErr:
			if err != nil {
				log.Error("pace stopped", "err", err)
				return 1
			}
			return 0
		case s := <-hup:
			switch s {
			case syscall.SIGHUP:
				log.Warn("SIGHUP ignored: pace cannot reload its configuration yet; restart it to apply changes (SIGTERM drains first)")
			default:
				log.Warn("signal ignored: pace logs to stderr (nothing to reopen); SIGTERM, SIGINT or SIGQUIT stop it gracefully", "signal", s.String())
			}
		case s := <-sig:
			log.Info("signal received: draining; send it again to exit at once", "signal", s.String())
			break wait
		}
	}
	drainFrom := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), e.ShutdownTimeout())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				log.Error("shutdown", "err", err)
			}
			select {
			case <-runErr:
			case <-time.After(5 * time.Second):
			}
			log.Info("pace stopped")
			return 0
		case s := <-sig:
			if time.Since(drainFrom) < sameStop {
				// The same stop request twice: GNU timeout, for one,
				// signals pace and then its whole process group.
				continue
			}
			log.Warn("second signal: exiting now", "signal", s.String())
			return 1
		}
	}
}

// sameStop is how soon after the first a second stop signal is taken for
// the same request (sent to the process and to its group), not for "exit
// now".
const sameStop = 500 * time.Millisecond

// manualConfig is where the original manual keeps the configuration.
const manualConfig = "config/proxy.toml"

// configPath is the file to load: path, unless -config was not given,
// ./proxy.toml does not exist and the manual's config/proxy.toml does.
func configPath(path string) string {
	if configSet() {
		return path
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(manualConfig); err == nil {
			return manualConfig
		}
	}
	return path
}

// configSet reports whether -config was given.
func configSet() bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "config" })
	return set
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug", "trace": // trace: as RUST_LOG=trace, pace's most detailed
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", s)
}

// rustLogLevel reads a level for pace from an env_logger RUST_LOG value
// ("info", "warn,pace=debug"): the directive for pace if there is one,
// else the bare default. "trace" is debug and "off" is error; anything
// else it does not know gives "", the default level.
func rustLogLevel(v string) string {
	level := ""
	for _, d := range strings.Split(v, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		name, lv, ok := strings.Cut(d, "=")
		switch {
		case !ok && level == "":
			level = name
		case ok && (name == "pace" || strings.HasPrefix(name, "pace::")):
			level = lv
		}
	}
	switch level {
	case "trace":
		return "debug"
	case "off":
		return "error"
	case "debug", "info", "warn", "error":
		return level
	}
	return ""
}

// selfBackend reports a backend that is pace's own listening address:
// every request sent there would come back to pace, and again, until the
// descriptors ran out. Literal addresses and "localhost" are compared, and
// ports as numbers. A listener on every address matches the loopback and
// this host's interface addresses of its family (0.0.0.0: IPv4; [::]:
// IPv6, as gnet binds it IPv6-only; no host: both). A name other than
// localhost that resolves to pace is not caught.
func selfBackend(listen string, backends []string) error {
	if listen == "" {
		listen = "0.0.0.0:8080"
	}
	lh, lps, err := net.SplitHostPort(listen)
	if err != nil {
		return nil // the server section's own validation reports it
	}
	lp, err := strconv.Atoi(lps)
	if err != nil {
		return nil
	}
	lip, _ := netip.ParseAddr(lh)
	lip = lip.Unmap()
	listenLocalhost := strings.EqualFold(lh, "localhost")
	anyAddr := lh == "" || lip.IsUnspecified()
	var local []netip.Addr
	if anyAddr {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					local = append(local, p.Addr().Unmap())
				}
			}
		}
	}
	for i, b := range backends {
		bh, bps, ok := backendHostPort(b)
		if !ok {
			continue
		}
		if bp, err := strconv.Atoi(bps); err != nil || bp != lp {
			continue
		}
		bip, err := netip.ParseAddr(bh)
		isIP := err == nil
		bip = bip.Unmap()
		backendLocalhost := strings.EqualFold(bh, "localhost")
		self := false
		switch {
		case anyAddr:
			family := lh == "" || !isIP || lip.Is4() == bip.Is4()
			self = backendLocalhost || isIP && family && (bip.IsLoopback() || bip.IsUnspecified() || slices.Contains(local, bip))
		case listenLocalhost:
			self = backendLocalhost || isIP && bip.IsLoopback()
		case isIP:
			self = bip == lip
		default:
			self = backendLocalhost && lip.IsLoopback()
		}
		if self {
			return fmt.Errorf("upstreams.backends[%d]: %q is pace's own listen address (%s): requests would come back to pace", i, b, listen)
		}
	}
	return nil
}

// backendHostPort splits a configured backend into host and port; ok is
// false when it does not parse (the upstreams section reports that).
func backendHostPort(b string) (host, port string, ok bool) {
	addr, err := upstream.ParseBackend(b)
	if err != nil {
		return "", "", false
	}
	host, port, err = net.SplitHostPort(addr)
	return host, port, err == nil
}

// unresolvedBackends looks up each backend named by host name, all at
// once and for at most d, and describes those that do not resolve. pace
// resolves names at each dial (so it follows DNS changes), so this is a
// warning, not an error: nginx would refuse to start. Any goroutine.
func unresolvedBackends(backends []string, d time.Duration) []string {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	type answer struct {
		i   int
		err error
	}
	answers := make(chan answer, len(backends)) // never blocks a late lookup
	answered := make([]bool, len(backends))     // true also for literal addresses
	asked := 0
	for i, b := range backends {
		host, _, ok := backendHostPort(b)
		if _, err := netip.ParseAddr(host); !ok || err == nil {
			answered[i] = true
			continue
		}
		asked++
		go func() {
			_, err := net.DefaultResolver.LookupHost(ctx, host)
			answers <- answer{i, err}
		}()
	}
	var res []string
wait:
	for ; asked > 0; asked-- {
		select {
		case a := <-answers:
			answered[a.i] = true
			if a.err != nil {
				res = append(res, fmt.Sprintf("backend %s: %v", backends[a.i], a.err))
			}
		case <-ctx.Done():
			for i, done := range answered {
				if !done {
					res = append(res, fmt.Sprintf("backend %s: no answer from the resolver within %v", backends[i], d))
				}
			}
			break wait
		}
	}
	slices.Sort(res)
	return res
}

func printConfig(path string, fc *fileConfig) {
	rl := fc.RateLimit.WithDefaults()
	fmt.Printf("pace: configuration %s is valid\n", path)
	listen := fc.Server.Listen
	if listen == "" {
		listen = "0.0.0.0:8080"
	}
	fmt.Printf("  listen        %s (workers %d; 0 = one per CPU)\n", listen, fc.Server.Workers)
	for _, b := range fc.Upstreams.Backends {
		a, _ := upstream.ParseBackend(b)
		fmt.Printf("  backend       %s\n", a)
	}
	within := ""
	if rt := time.Duration(fc.Upstreams.RetryTimeout); rt != 0 {
		within = fmt.Sprintf(" (within retry_timeout %v)", rt)
	}
	fmt.Printf("  max_retries   %d%s\n", fc.Upstreams.Retries(), within)
	if rl.IsEnabled() {
		trusted := fmt.Sprintf("%d trusted proxies", len(rl.TrustedProxies))
		if len(rl.TrustedProxies) > 0 {
			trusted = fmt.Sprintf("trusted proxies %s (client from %s)", strings.Join(rl.TrustedProxies, ", "), rl.ClientField())
		}
		fmt.Printf("  rate_limit    %d requests per %ds, key %s (IPv6 per /%d), %s\n", rl.MaxRequests, rl.WindowSeconds, rl.KeyExtractor, rl.IPv6Prefix, trusted)
	} else {
		fmt.Printf("  rate_limit    off\n")
	}
	if fc.Metrics.On() {
		who := "any client"
		if len(fc.Metrics.Allow) > 0 {
			who = strings.Join(fc.Metrics.Allow, ", ")
		}
		fmt.Printf("  metrics       %s (for %s)\n", fc.Metrics.Path(), who)
	} else {
		fmt.Printf("  metrics       off\n")
	}
}

// spareProc sets GOMAXPROCS to one more than the event loops and returns
// it. An event loop waits for events in a blocking epoll_wait, which the Go
// runtime sees as a system call; with no idle P, the runtime's monitor
// hands the waiting loop's P to a new thread after 20 us and the loop must
// win a P back when events come (a futex wake-up, a context switch and a
// monitor wake-up per wait, measured at about 0.5 and 0.3 per connection
// under ab). While a P is idle the runtime leaves a loop in its system call
// alone for up to 10 ms. One spare P buys that: 6-17% more requests per
// second with keep-alive on a 2-core machine, and about as many without.
//
// More Ps than that are lowered to it, so that pace uses the cores its
// workers say, as nginx's worker_processes does: with idle Ps the runtime
// wakes threads that find nothing to run, and the collector's idle
// workers spread over every idle CPU. On a 16-CPU machine with 8 workers,
// GOMAXPROCS 9 against 16 gave 7% more requests per second at 50
// keep-alive connections (356k and 371k against 332k and 347k, two rounds)
// and 6% less CPU per request; other loads moved within noise.
//
// It is left as it is when $GOMAXPROCS is set, and never raised when the
// runtime chose fewer Ps than ncpu (the CPUs pace may run on): that is Go's
// reading of a cgroup CPU limit, and a P over the limit would let the
// collector's idle workers run pace into CPU throttling.
func spareProc(workers, ncpu int) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	want := workers + 1
	p := runtime.GOMAXPROCS(0)
	if p < ncpu && p < want {
		want = p
	}
	if want != p {
		// Setting it at all stops Go from following later changes of
		// the cgroup limit (Go 1.25 and later): only when it differs.
		runtime.GOMAXPROCS(want)
	}
	return want
}
