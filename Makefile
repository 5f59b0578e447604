# pace — see README.md.
GO        ?= go
FUZZTIME  ?= 30s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PKGS       = ./config ./upstream ./metrics ./codec ./ratelimit ./engine

.PHONY: build run test smoke bench bench-micro bench-load fuzz stress clean

## build: compile ./pace
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o pace .

## run: start the test backends proxy.toml names (8000, 8001) and pace (8080); Ctrl-C stops all
run:
	bash scripts/start_all.sh

## test: vet, unit and integration tests (race detector on the fast ones), e2e suite, pace's gnet patches
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -race -short -timeout 10m $(PKGS)
	$(GO) -C third_party/gnet test -count=1 -race -run Pace . ./pkg/socket ./pkg/netpoll

## smoke: the original manual's curl checks against a freshly started stack
smoke: build
	bash scripts/smoke.sh

## bench: micro-benchmarks, then the side-by-side load harness
bench: bench-micro bench-load

bench-micro:
	$(GO) test -run=NONE -bench=. -benchmem $(PKGS)

bench-load:
	bash bench/load.sh $(BENCH_ARGS)

## fuzz: run every native fuzzer for FUZZTIME each
fuzz:
	@for f in $$($(GO) test -list 'Fuzz.*' ./codec | grep ^Fuzz); do \
		echo "== $$f"; $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) ./codec || exit 1; done
	@for f in $$($(GO) test -list 'Fuzz.*' ./ratelimit | grep ^Fuzz); do \
		echo "== $$f"; $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) ./ratelimit || exit 1; done

## stress: the long reliability runs (slowloris, limits, slow downloads, 2M-request soak)
stress:
	$(GO) test -count=1 -tags stress -run Stress -timeout 60m -v ./e2e/

clean:
	rm -rf pace bin bench/out
