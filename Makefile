# uswitch — userspace switch, router and NAT for network namespaces.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/uswitch

.PHONY: build run test test-unit bench bench-net fuzz vet clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/uswitch

# Runs the embedded default topology in the foreground (needs root); Ctrl-C
# stops it and removes everything it made.
run: build
	./$(BIN) run

# Every test, race detector on. The end-to-end tests need root and skip
# with a message without it.
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...

# Only the tests that need no root.
test-unit:
	USWITCH_SKIP_E2E=1 $(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

# Go microbenchmarks of the fast paths (ns/frame, allocs/op).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./vswitch ./router ./nat ./datapath ./gso ./packet

# The kernel, uswitch offload and uswitch plain side by side in the same run
# (needs root); writes bench/RESULTS.md with both instances' CPU profiles.
# SECS seconds per iperf3 test; PROFILE=0 runs without --cpuprofile.
SECS    ?= 5
PROFILE ?= 1
bench-net: build
	SECS=$(SECS) PROFILE=$(PROFILE) ./bench/net.sh

# Each fuzz target for a short, bounded time (FUZZTIME each; CI uses 10s).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzInput$$' -fuzztime $(FUZZTIME) ./vswitch
	$(GO) test -run '^$$' -fuzz '^FuzzPortInput$$' -fuzztime $(FUZZTIME) ./router
	$(GO) test -run '^$$' -fuzz '^FuzzViews$$' -fuzztime $(FUZZTIME) ./packet
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzHooks$$' -fuzztime $(FUZZTIME) ./nat
	$(GO) test -run '^$$' -fuzz '^FuzzDatapath$$' -fuzztime $(FUZZTIME) ./datapath
	$(GO) test -run '^$$' -fuzz '^FuzzDatapathOffload$$' -fuzztime $(FUZZTIME) ./datapath
	$(GO) test -run '^$$' -fuzz '^FuzzSegment$$' -fuzztime $(FUZZTIME) ./gso
	$(GO) test -run '^$$' -fuzz '^FuzzSum$$' -fuzztime $(FUZZTIME) ./packet

clean:
	rm -rf bin
