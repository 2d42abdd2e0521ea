#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmark need, and nothing when
# it is all there already: containerd 1.6 and runc from Debian, busybox-static
# for test rootfs, and containerd 2.4.2 (with ctr and its runc shim) built
# from the Go module proxy into /opt/containerd-2.4.2/bin.
set -euo pipefail

CONTAINERD2_VERSION=v2.4.2
CONTAINERD2_BIN=/opt/containerd-2.4.2/bin
export PATH="/usr/local/go/bin:$PATH"

missing=()
[[ -x /usr/bin/containerd && -x /usr/bin/ctr && -x /usr/bin/containerd-shim-runc-v2 ]] || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if ((${#missing[@]})); then
	echo "install-deps: apt-get install ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

have2() {
	[[ -x "$CONTAINERD2_BIN/containerd" && -x "$CONTAINERD2_BIN/ctr" && -x "$CONTAINERD2_BIN/containerd-shim-runc-v2" ]] &&
		"$CONTAINERD2_BIN/containerd" --version 2>/dev/null | grep -q "${CONTAINERD2_VERSION#v}"
}
if ! have2; then
	echo "install-deps: go install containerd $CONTAINERD2_VERSION into $CONTAINERD2_BIN"
	mkdir -p "$CONTAINERD2_BIN"
	GOBIN="$CONTAINERD2_BIN" GOFLAGS=-buildvcs=false go install \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION" \
		"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION"
fi
echo "install-deps: containerd $(/usr/bin/containerd --version | awk '{print $3}'), containerd $("$CONTAINERD2_BIN/containerd" --version | awk '{print $3}'), $(runc --version | head -1), busybox-static ready"
