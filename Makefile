# uswitch — userspace switch, router and NAT for network namespaces.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/uswitch

# Where `make install` puts things: $(DESTDIR)$(BINDIR)/uswitch, the systemd
# unit in $(DESTDIR)$(UNITDIR) (a directory systemd reads units from when
# PREFIX is /usr/local or /usr), and the CNI plugin in $(DESTDIR)$(CNIDIR),
# where CNI runtimes look for plugins.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
CNIDIR  ?= /opt/cni/bin
CNI_BIN ?= bin/uswitch-cni

.PHONY: build run test cni-tools chromium test-unit bench bench-net bench-bimodal bench-udploss bench-pingwake bench-scale fuzz vet clean install uninstall

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/uswitch
	$(GO) build -ldflags "$(LDFLAGS)" -o $(CNI_BIN) ./cmd/uswitch-cni

# Runs the embedded default topology in the foreground (needs root); Ctrl-C
# stops it and removes everything it made.
run: build
	./$(BIN) run

# Every test, race detector on. The tests that need root (end-to-end and
# the namespace/TAP tests of other packages) fail without it, saying so.
test: vet cni-tools chromium
	$(GO) test -race -count=1 -timeout 30m ./...
	cd examples && $(GO) test -race -count=1 ./...

# The CNI tools e2e/cni_test.go drives, go installed into $(CNI_TOOLS) when
# missing, at the versions go.mod requires: cnitool, and the reference
# plugins bridge, host-local and portmap for the side-by-side comparison;
# portmap runs iptables (inside the test's own host namespace), which a
# fresh Debian machine lacks: installed with apt-get when missing.
CNI_TOOLS ?= bin/cni
cni-tools:
	@command -v iptables >/dev/null || PATH=$$PATH:/usr/sbin:/sbin command -v iptables >/dev/null || { \
		echo "apt-get install iptables (the reference portmap plugin runs it)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables >/dev/null; }
	@cni=$$($(GO) list -m -f '{{.Version}}' github.com/containernetworking/cni) && \
	plugins=$$($(GO) list -m -f '{{.Version}}' github.com/containernetworking/plugins) && \
	for p in cni/cnitool@$$cni plugins/plugins/main/bridge@$$plugins \
		plugins/plugins/ipam/host-local@$$plugins plugins/plugins/meta/portmap@$$plugins; do \
		name=$${p%@*}; name=$${name##*/}; \
		[ -x $(CNI_TOOLS)/$$name ] && continue; \
		echo "GOBIN=$(abspath $(CNI_TOOLS)) $(GO) install github.com/containernetworking/$$p"; \
		GOBIN=$(abspath $(CNI_TOOLS)) $(GO) install github.com/containernetworking/$$p || exit 1; \
	done

# The web page of `uswitch ui` is tested in headless Chromium (ui/ui_test.go):
# the Debian package chromium, installed with apt-get when missing.
chromium:
	@command -v chromium >/dev/null || { \
		echo "apt-get install chromium (ui/ui_test.go drives it headless)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Only the tests that need no root (USWITCH_SKIP_E2E skips the others).
test-unit: chromium
	USWITCH_SKIP_E2E=1 $(GO) test -race -count=1 ./...
	cd examples && $(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

# Go microbenchmarks of the fast paths (ns/frame, allocs/op).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./switch ./router ./nat ./datapath ./gso ./packet

# The kernel, Open vSwitch's userspace datapath (L2; OVS=0 leaves it out),
# uswitch (busy-poll, the default) and uswitch with the CPU latency request
# (--cpu-latency) side by side, RUNS times with the setups alternating,
# each run's ratios to the kernel (needs root; installs iperf3, ping,
# iptables, python3, curl and openvswitch-switch with apt-get when
# missing); writes bench/RESULTS.md with uswitch's CPU time per Gbit and
# per million datagrams and CPU profiles of the TCP and UDP measures. SECS
# seconds per iperf3 test; PROFILE=0 without the profiles; EXTRA=1 adds the
# reader-goroutine and plain instances; XFLAGS="--poll-threads 2" adds the
# default instance with those flags; USW_ARGS, LINK=veth, ONLY, NOTE,
# HALTPOLL_NS: see bench/net.sh. About 13 minutes on 2 cores.
SECS    ?= 4
RUNS    ?= 5
PROFILE ?= 1
OVS     ?= 1
bench-net: build
	SECS=$(SECS) RUNS=$(RUNS) PROFILE=$(PROFILE) OVS=$(OVS) ./bench/net.sh

# Why single-stream TCP through uswitch is bimodal: where the busy-poll
# thread, the sender and the receiver ran, run by run, for each placement
# in PLACES (needs root): see bench/bimodal.sh and bench/RESULTS-bimodal.md.
bench-bimodal: build
	./bench/bimodal.sh

# Where 64-byte UDP datagrams are lost when the sender outruns uswitch
# (sender's TAP ring, uswitch, receiving socket), for a TAP and a veth
# pair of endpoints (needs root): see bench/RESULTS-udploss.md.
bench-udploss: build
	./bench/udploss.sh
	LINK=veth ./bench/udploss.sh

# Where a ping -A through uswitch spends its time: the kernel bridge and
# uswitch in turn, the pinger and the busy-poll thread on the same CPU,
# on different ones, or free (needs root): see bench/pingwake.sh and
# bench/RESULTS-limits.md.
bench-pingwake: build
	./bench/pingwake.sh

# The switch path with a 1 M-station FDB end to end, the kernel bridge and
# uswitch side by side (needs root; a few minutes, most of it learning the
# stations): see bench/RESULTS-scale.md.
bench-scale: build
	./bench/scale.sh

# Each fuzz target for a short, bounded time (FUZZTIME each; CI uses 10s).
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when -fuzztime runs out mid-input (go.dev/issue/75804, fixed in
# Go 1.27): that, and only that, is reported and not failed. A crasher
# ("Failing input written to ...") or any other error fails.
FUZZTIME ?= 20s
FUZZ_TARGETS := switch:FuzzInput router:FuzzPortInput router:FuzzPortInput6 packet:FuzzViews packet:FuzzTransport packet:FuzzSum packet:FuzzIPv6Ext packet:FuzzIPv6 \
	config:FuzzParse nat:FuzzHooks nat:FuzzHooks6 datapath:FuzzDatapath datapath:FuzzDatapathOffload gso:FuzzSegment defrag:FuzzReassemble defrag:FuzzReassemble6 host:FuzzDeliver tap:FuzzRxRing trace:FuzzMatch uring:FuzzCompletion
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "$(GO) test -run '^$$' -fuzz '^$$fn$$' -fuzztime $(FUZZTIME) ./$$pkg"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg 2>&1); rc=$$?; \
		echo "$$out" | tail -n 4; \
		if [ $$rc -ne 0 ]; then \
			if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "$$fn: the fuzz coordinator's deadline race (go.dev/issue/75804), not a finding"; \
			else \
				echo "$$out"; exit 1; \
			fi; \
		fi; \
	done

# The binaries, and the unit uswitch@NAME.service that runs
# /etc/uswitch/NAME.toml (systemctl enable --now uswitch@NAME).
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/uswitch
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' dist/uswitch@.service > $(DESTDIR)$(UNITDIR)/uswitch@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/uswitch@.service
	install -D -m 0755 $(CNI_BIN) $(DESTDIR)$(CNIDIR)/uswitch-cni

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/uswitch $(DESTDIR)$(UNITDIR)/uswitch@.service $(DESTDIR)$(CNIDIR)/uswitch-cni

clean:
	rm -rf bin
