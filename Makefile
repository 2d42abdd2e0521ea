# containerd-shim-mini-v2. `make test` is what CI runs (through .ci/run).
GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin/containerd-shim-mini-v2
# What container processes start from, installed beside the shim (see
# cmd/containerd-shim-mini-v2-init): the container side alone.
INITBIN := bin/containerd-shim-mini-v2-init
# Stripped: smaller binary, fewer pages for each shim to map. Stack traces
# keep their function names (pclntab stays). no_grpc leaves out the gRPC
# service stubs of containerd/api's task package, and with them gRPC's
# transport, x/net/trace and html/template: the shim speaks ttrpc only
# (integration.ShimBuildTags says the same for the suites' own builds).
# Static (glibc and libseccomp linked in; netgo and osusergo keep the
# resolver and user lookups in Go, so nothing needs glibc's NSS): every
# start of the binary (start, the daemon, each init and exec) skips the
# dynamic loader, 0.5 ms each here.
BUILDTAGS  := no_grpc,netgo,osusergo
BUILDFLAGS := -trimpath -tags $(BUILDTAGS) -ldflags "-s -w -extldflags -static"
# Packages with goroutines run under the race detector.
RACE_PKGS  := ./shim/... ./task/... ./process/... ./io/... ./steptime/...
PLAIN_PKGS := ./linux/... ./nsexec/... ./cmd/... ./runtimeopts/... ./bench/...
# Tests through containerd's Go client: a module of its own, so that the
# shim's module never depends on containerd (see integration/client/doc.go).
CLIENT_DIR := integration/client
# Integration: which containerd versions and runtimes (see integration/doc.go).
MINI_TEST_CONTAINERD ?= 1.6,2.4
MINI_TEST_RUNTIMES   ?= io.containerd.mini.v2
INTEGRATION_FLAGS    ?=
# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 3s
# Every fuzz target, as package:Target; a crasher go test finds is kept
# under the package's testdata/fuzz as seed corpus.
FUZZ_TARGETS := ./linux/initproc:FuzzHandshakeFrame ./linux:FuzzHandshakePidLine ./linux:FuzzLoadSpec \
	./linux/initproc:FuzzMountOptions ./linux:FuzzCgroupPath ./io:FuzzParseURI ./shim:FuzzStartInput \
	./runtimeopts:FuzzRuntimeOptions
# Benchmark flags, e.g. BENCHFLAGS="-n 50 -containerd 1.6,2.4".
BENCHFLAGS ?=

export CGO_ENABLED := 1
export PATH := /usr/local/go/bin:$(PATH)
export MINI_TEST_CONTAINERD MINI_TEST_RUNTIMES

.PHONY: all build install test unit fuzz model soak load integration vet check-deps deps demo bench clean test-cgroupv2 test-systemd test-guest-focus

all: build

# Always handed to go: its build cache knows better than make what changed.
build:
	$(GO) build $(BUILDFLAGS) -o $(BIN) ./cmd/containerd-shim-mini-v2
	$(GO) build $(BUILDFLAGS) -o $(INITBIN) ./cmd/containerd-shim-mini-v2-init

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/containerd-shim-mini-v2
	install -D -m 0755 $(INITBIN) $(DESTDIR)$(PREFIX)/bin/containerd-shim-mini-v2-init

deps:
	bash hack/install-deps.sh

check-deps:
	@bash hack/install-deps.sh --check

vet:
	$(GO) vet ./...
	@if $(GO) list -tags $(BUILDTAGS) -deps ./cmd/containerd-shim-mini-v2 | grep -qx google.golang.org/grpc; then \
		echo "the shim links gRPC again: something beside containerd/api's task stubs imports google.golang.org/grpc"; exit 1; fi
	@if $(GO) list -tags $(BUILDTAGS) -deps ./cmd/containerd-shim-mini-v2-init | grep -E '^(google.golang.org/protobuf|github.com/containerd/ttrpc|github.com/containerd/cgroups/v3/cgroup[12]|github.com/seccomp/libseccomp-golang)$$'; then \
		echo "the init binary links shim-side packages (above): linux/initproc must import none of them"; exit 1; fi
	cd $(CLIENT_DIR) && $(GO) vet ./...
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

unit:
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 $(PLAIN_PKGS)

# Needs root and what hack/install-deps.sh installs. Runs against the binary
# `make build` made, the one `make install` installs.
integration: check-deps build
	@[ "$$(id -u)" = 0 ] || { echo "integration tests need root"; exit 1; }
	MINI_SHIM_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m -v $(INTEGRATION_FLAGS) ./integration/
	cd $(CLIENT_DIR) && MINI_SHIM_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m -v $(INTEGRATION_FLAGS) ./...

test: check-deps vet unit model fuzz integration test-systemd test-cgroupv2 test-guest-focus

# The Promela model of the task service's exit handling (model/shim.pml),
# checked over every interleaving with spin.
model:
	@dir=$$(mktemp -d); trap 'rm -rf '"$$dir" EXIT; cp model/shim.pml "$$dir"/ && cd "$$dir" && \
		spin -a shim.pml && cc -O2 -o pan pan.c && ./pan -m100000 >out 2>&1; \
		grep -q "errors: 0" out || { cat out; exit 1; }; grep -E "states, stored|errors:" out

# Each fuzz target for FUZZTIME, one after the other (go test fuzzes one
# target of one package at a time).
fuzz:
	@out=$$(mktemp); trap 'rm -f '"$$out" EXIT; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) $${t%%:*} >"$$out" 2>&1 || \
		{ grep -q 'context deadline exceeded' "$$out" && ! grep -q 'Failing input' "$$out" && \
			echo "  go's fuzzer missed its own deadline (no failing input): once more" && \
			$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) $${t%%:*} >"$$out" 2>&1; } || \
			{ cat "$$out"; exit 1; }; \
	done

# The systemd cgroup driver's cases (-run Systemd) against a real systemd:
# hack/systemd-test.sh boots a private systemd as PID 1 of its own
# namespaces where systemd is not init, and runs the integration test
# binary inside them (a few seconds). A step of its own, not alongside the
# main suite. Without /lib/systemd/systemd it says so loudly and passes.
test-systemd: check-deps build
	@[ "$$(id -u)" = 0 ] || { echo "test-systemd needs root"; exit 1; }
	MINI_SHIM_BIN=$(CURDIR)/$(BIN) bash hack/systemd-test.sh

# Both integration suites again, inside a KVM guest with only the cgroup v2
# hierarchy (hack/vm-test.sh). Without a usable /dev/kvm it says so loudly
# and passes; VMTEST_ACCEL=tcg runs it under emulation instead (slow).
test-cgroupv2: check-deps build
	MINI_SHIM_BIN=$(CURDIR)/$(BIN) bash hack/vm-test.sh $(INTEGRATION_FLAGS)

# The cases only the emulated guest can run here, under TCG whatever the
# host's KVM: checkpoint and restore (this host's kernel is too new for
# Debian's CRIU), cgroup delegation (cgroup v2) and AppArmor (not enabled
# here). Part of `make test` (a few minutes under emulation).
GUEST_FOCUS := Checkpoint|CgroupDelegation|TestLSMLabels
test-guest-focus: check-deps build
	MINI_SHIM_BIN=$(CURDIR)/$(BIN) VMTEST_ACCEL=tcg VMTEST_SYSTEMD=0 VMTEST_TIMEOUT=$${VMTEST_TIMEOUT:-1200} \
		bash hack/vm-test.sh -run '$(GUEST_FOCUS)'

demo: deps build
	$(GO) run ./integration/cmd/demo -shim $(CURDIR)/$(BIN)

# Side by side with runc-v2 on containerd 1.6 and 2.4: end to end against
# the floor shim, memory per running container (also in a shared shim),
# and the runtime level over ttrpc with no containerd (see bench/main.go).
bench: deps build
	$(GO) run ./bench -shim $(CURDIR)/$(BIN) -containerd 1.6,2.4 $(BENCHFLAGS)

# 200 concurrent runs printing 2000 lines each per runtime, under two cpu
# burners, on both containerd versions: lost output counted.
load: deps build
	$(GO) run ./bench -shim $(CURDIR)/$(BIN) -load -containerd 1.6,2.4 $(BENCHFLAGS)

# 1000 lifecycles and 5000 execs per runtime, side by side with runc-v2,
# printing containerd's and the shim's fds, threads and memory as they go.
soak: deps build
	$(GO) run ./bench -shim $(CURDIR)/$(BIN) -soak $(BENCHFLAGS)

clean:
	rm -rf bin
