# xlb — everything a fresh machine with Go needs is set up from here.
#
#   make demo    run the main job: HTTP through xlbd in a namespace lab (root),
#                else the offline pipeline example
#   make test    vet, format check, unit tests with -race, bounded fuzzing
#   make docs    regenerate docs/hcl.md from the element and plugin specs
#   make bench   benchmarks, reported per packet (make bench-e2e: on the wire, root)
#
# XLB_E2E=1 (set by .ci/run) turns "skip: needs root / netns / a tool" into a
# failure, so CI is never green by skipping the real thing.

GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN       := bin
FUZZTIME  ?= 10s
FUZZMINIMIZETIME ?= 2s
BENCHTIME ?= 1s
BENCHCOUNT ?= 1
PKGS      := ./...

.PHONY: all build docs demo demo-offline test tools proto vet fmt-check unit fuzz bench bench-e2e clean

all: build

build:
	$(GO) build -o $(BIN)/xlbd ./cmd/xlbd
	$(GO) build -o $(BIN)/xlbctl ./cmd/xlbctl
	$(GO) build -o $(BIN)/plugins/ ./plugins/healthcheck/tcp ./plugins/healthcheck/http ./plugins/announce/bgp ./plugins/source/file ./plugins/source/etcd

# docs/hcl.md is generated from the element and plugin specs and
# internal/hcldoc/hcl.md.tmpl; internal/hcldoc's test fails when it is stale.
docs:
	$(GO) run ./internal/hcldoc/gen -o docs/hcl.md

# As root, the main job is the lab: real HTTP through xlbd over AF_XDP in
# network namespaces. Without root it says so and runs the offline example.
demo: build
	@if [ "$$(id -u)" = 0 ]; then \
		$(GO) build -o $(BIN)/ ./e2e/cmd/xlb-backend ./e2e/cmd/xlb-client ./e2e/cmd/xlb-demo && \
		$(BIN)/xlb-demo -xlbd $(BIN)/xlbd -backend $(BIN)/xlb-backend -client $(BIN)/xlb-client -config examples/lab/lab.hcl; \
	else \
		echo "make demo: not root, so no network namespaces or XDP: running the offline example instead"; \
		$(MAKE) --no-print-directory demo-offline; \
	fi

demo-offline: build
	$(BIN)/xlbd run -config examples/offline/offline.hcl
	@if command -v tshark >/dev/null; then \
		echo "== the first packets of examples/offline/out.pcap, as tshark decodes them"; \
		tshark -r examples/offline/out.pcap -c 6 -T fields -E header=y \
			-e frame.number -e ip.src -e ip.dst -e ip.proto -e ipv6.src -e ipv6.dst -e tcp.dstport -e udp.dstport 2>/dev/null; \
	else echo "(install tshark to see examples/offline/out.pcap decoded as GRE)"; fi

test: tools vet fmt-check unit fuzz

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 $(PKGS)
	cd examples/healthcheck-plugin && $(GO) test -race -count=1 ./...

# Every Fuzz target in the repo, each for FUZZTIME (go test -fuzz takes one
# target at a time): make fuzz FUZZTIME=10m for a long run; make test uses
# the default, a short pass. Each run logs to its own file, so two at once
# (helpers sharing a machine) do not read each other's. Minimizing each
# new interesting input is bounded by FUZZMINIMIZETIME, not go test's 60 s:
# with that, FuzzCounted spent 30 of 45 s minimizing one input and ran a
# third as many inputs as with 2 s (a failing input is still written,
# minimized for as long).
#
# Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a
# failure ("context deadline exceeded", with no failing input:
# go.dev/issue/75804, fixed in Go 1.27), more often on a loaded machine. That alone is reported and passed over; a failing input
# (written to testdata/fuzz) or any other failure fails the target.
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./examples/healthcheck-plugin/'); do \
		pkg=./$$(dirname $${f#./}); \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
			if ! $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg >$$log 2>&1; then \
				if grep -q 'Failing input written to' $$log || ! grep -qx '    context deadline exceeded' $$log || \
					[ "$$(grep -c '^--- FAIL' $$log)" != 1 ]; then cat $$log; exit 1; fi; \
				echo "  the coordinator reported its own deadline (go.dev/issue/75804); no failing input"; \
			fi; \
		done; \
	done

# What the tests use beyond Go: trafgen (Debian netsniff-ng) for the
# on-the-wire benchmark's smoke test, BIRD 2 (Debian bird2: bird and birdc)
# for the lab's BGP router, etcd (Debian etcd-server) for the tests of the
# etcd config source, Chromium (Debian chromium) for the status page's
# test in a headless browser, and the pinned protobuf generators
# (protoc from Debian, protoc-gen-go and protoc-gen-go-grpc in bin/tools)
# for the test that the generated plugin code is not stale. Each is
# installed only when missing; Debian packages only as root (without root
# those tests skip anyway). apt waits up to 5 minutes for another apt or
# dpkg process (unattended-upgrades on a fresh machine) to release its lock
# instead of failing the build. The lab starts its own BIRDs and the tests
# their own etcds, so the bird and etcd services the packages may start on a
# fresh machine are stopped and disabled.
tools:
	@if ! command -v trafgen >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing netsniff-ng (trafgen)"; \
			apt-get -o DPkg::Lock::Timeout=300 update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq netsniff-ng >/dev/null; \
		else echo "trafgen not installed and not root: its tests will skip"; fi; \
	fi
	@if ! command -v bird >/dev/null || ! command -v birdc >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing bird2 (the lab router's BGP daemon)"; \
			apt-get -o DPkg::Lock::Timeout=300 update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq bird2 >/dev/null && { \
			if [ -d /run/systemd/system ]; then systemctl disable --now bird >/dev/null 2>&1; fi; \
			service bird stop >/dev/null 2>&1; update-rc.d bird disable >/dev/null 2>&1; true; }; \
		else echo "bird not installed and not root: the BGP lab tests will skip"; fi; \
	fi
	@if ! command -v etcd >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing etcd-server (the etcd the tests start)"; \
			apt-get -o DPkg::Lock::Timeout=300 update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq etcd-server >/dev/null && { \
			if [ -d /run/systemd/system ]; then systemctl disable --now etcd >/dev/null 2>&1; fi; \
			service etcd stop >/dev/null 2>&1; update-rc.d etcd disable >/dev/null 2>&1; true; }; \
		else echo "etcd not installed and not root: the etcd tests will skip"; fi; \
	fi
	@if ! command -v chromium >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing chromium (the status page's test drives it headless)"; \
			apt-get -o DPkg::Lock::Timeout=300 update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium >/dev/null; \
		else echo "chromium not installed and not root: the status page test will skip"; fi; \
	fi
	@tmp=$$(mktemp -d) && GO=$(GO) sh plugins/proto/generate.sh -install $$tmp >/dev/null 2>&1 \
		|| echo "protobuf generators not installed (need root for protoc): the staleness test will skip"; rm -rf $$tmp

# Regenerate plugins/proto/*.pb.go with the pinned generators.
proto:
	GO=$(GO) sh plugins/proto/generate.sh -install

# Forwarding on the wire (root): offered load from trafgen, xlbd with one
# pinned worker against a minimal AF_XDP forwarder; see docs/benchmarks.md.
# Then the SYN flood of e2e/flood_test.go for 60 s (make test floods 10 s).
bench-e2e: tools
	$(GO) run ./e2e/cmd/xlb-bench-e2e
	XLB_FLOOD_DURATION=60s XLB_FLOOD_RATE=max $(GO) test -count=1 -run '^TestSYNFlood$$' -v ./e2e/

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) $(PKGS)

clean:
	rm -rf $(BIN) examples/offline/out.pcap
