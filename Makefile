# containerd-shim-mini-v2. `make test` is what CI runs (through .ci/run).
GO      ?= go
PREFIX  ?= /usr/local
BIN     := bin/containerd-shim-mini-v2
# Stripped: smaller binary, fewer pages for each shim to map. Stack traces
# keep their function names (pclntab stays).
BUILDFLAGS := -trimpath -ldflags "-s -w"
# Packages with goroutines run under the race detector.
RACE_PKGS  := ./shim/ ./task/ ./process/ ./io/
PLAIN_PKGS := ./linux/ ./nsexec/ ./cmd/...

export CGO_ENABLED := 1

.PHONY: all build install test unit integration vet demo bench deps clean

all: build

build:
	$(GO) build $(BUILDFLAGS) -o $(BIN) ./cmd/containerd-shim-mini-v2

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/containerd-shim-mini-v2

deps:
	bash hack/install-deps.sh

vet:
	$(GO) vet ./...
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

unit:
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 $(PLAIN_PKGS)

# Needs root, containerd 1.6 (Debian), containerd 2.4.2 in /opt/containerd-2.4.2/bin
# and busybox-static: `make deps` installs them.
integration: build
	@for f in /usr/bin/containerd /opt/containerd-2.4.2/bin/containerd /bin/busybox; do \
		[ -x $$f ] || { echo "missing $$f: run 'make deps' (hack/install-deps.sh)"; exit 1; }; done
	$(GO) test -count=1 -timeout 20m -v ./integration/

test: vet unit integration

demo: deps build
	bash hack/demo.sh

bench: deps build
	$(GO) run ./bench $(BENCHFLAGS)

clean:
	rm -rf bin
