#!/usr/bin/env bash
# Installs what building, testing, the demo and the benchmark need on
# Debian 12: containerd 1.6 + runc + busybox-static from Debian, a C
# compiler for the shim's cgo preamble, and containerd 2.4.2 (daemon, ctr
# and its own runc shim) built with `go install` into /opt. For the cgroup
# v2 guest of hack/vm-test.sh: qemu, cpio and Debian's generic kernel
# (linux-image-amd64: the cloud flavour has no 9p, which the guest needs).
# For hack/systemd-test.sh: systemd, booted there in namespaces of its own
# (it need not be, and on the CI machines is not, the host's init). For
# the Docker Engine suite: dockerd built with `go install` into /opt, and
# Debian's tini (its init for `docker run --init`). For checkpoint and
# restore: Debian's CRIU, and iptables, which it locks the network with.
#
# Idempotent and quick when everything is there; apt-get update runs only
# when a package is missing. Needs root (and network when installing).
#
#   hack/install-deps.sh          install what is missing
#   hack/install-deps.sh --check  only report what is missing (exit 1 if any)
#
# Debian's containerd package may start a system containerd; it is left
# alone: the tests start their own daemons on private sockets.
set -euo pipefail

CTRD2_VERSION=2.4.2
CTRD2_BIN=/opt/containerd-${CTRD2_VERSION}/bin
# The integration/client/docker suite looks for dockerd there.
MOBY_VERSION=2.0.0-beta.24
MOBY_BIN=/opt/moby-${MOBY_VERSION}/bin
APT_PACKAGES=(containerd runc busybox-static make gcc libc6-dev pkg-config libseccomp-dev qemu-system-x86 cpio linux-image-amd64 systemd apparmor spin tini criu iptables)

check_only=false
case "${1:-}" in
--check) check_only=true ;;
"") ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

export PATH="/usr/local/go/bin:${PATH}"
if command -v go >/dev/null; then
	PATH="$(go env GOPATH)/bin:${PATH}"
fi

log() { echo "install-deps: $*" >&2; }

# The files each package must provide, so a half-removed package counts as
# missing too.
declare -A PROVIDES=(
	[containerd]="/usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2"
	[runc]="/usr/bin/runc"
	[busybox-static]="/bin/busybox"
	[make]="/usr/bin/make"
	[gcc]="/usr/bin/gcc"
	[libc6-dev]="/usr/include/stdio.h /usr/lib/x86_64-linux-gnu/libc.a"
	[pkg-config]="/usr/bin/pkg-config"
	[libseccomp-dev]="/usr/include/seccomp.h /usr/lib/x86_64-linux-gnu/pkgconfig/libseccomp.pc /usr/lib/x86_64-linux-gnu/libseccomp.a"
	[qemu-system-x86]="/usr/bin/qemu-system-x86_64"
	[cpio]="/usr/bin/cpio"
	# Globs: the kernel version changes with Debian's updates. Unmatched,
	# a glob stays literal and counts as missing.
	[linux-image-amd64]="/boot/vmlinuz-*-amd64 /lib/modules/*-amd64/kernel/fs/9p/9p.ko*"
	[systemd]="/lib/systemd/systemd /bin/systemctl"
	[apparmor]="/sbin/apparmor_parser"
	[spin]="/usr/bin/spin"
	[tini]="/usr/bin/tini-static"
	# CRIU locks a container's network during a dump with iptables.
	[criu]="/usr/sbin/criu"
	[iptables]="/usr/sbin/iptables-restore /usr/sbin/ip6tables-restore"
)

package_ok() {
	local pkg=$1 f
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || return 1
	for f in ${PROVIDES[$pkg]}; do
		[ -e "$f" ] || return 1
	done
}

containerd2_ok() {
	local b
	for b in containerd ctr containerd-shim-runc-v2; do
		[ -x "${CTRD2_BIN}/${b}" ] || return 1
	done
	"${CTRD2_BIN}/containerd" --version 2>/dev/null | grep -q " v\{0,1\}${CTRD2_VERSION}\b"
}

dockerd_ok() {
	[ -x "${MOBY_BIN}/dockerd" ] && "${MOBY_BIN}/dockerd" --version >/dev/null 2>&1
}

missing_pkgs=()
for p in "${APT_PACKAGES[@]}"; do
	package_ok "$p" || missing_pkgs+=("$p")
done
need_ctrd2=false
containerd2_ok || need_ctrd2=true
need_dockerd=false
dockerd_ok || need_dockerd=true
need_go=false
command -v go >/dev/null || need_go=true

if $check_only; then
	rc=0
	if ((${#missing_pkgs[@]})); then
		log "missing Debian packages: ${missing_pkgs[*]}"
		rc=1
	fi
	if $need_ctrd2; then
		log "missing containerd ${CTRD2_VERSION} in ${CTRD2_BIN}"
		rc=1
	fi
	if $need_dockerd; then
		log "missing dockerd ${MOBY_VERSION} in ${MOBY_BIN}"
		rc=1
	fi
	if $need_go; then
		log "missing go (expected in /usr/local/go/bin)"
		rc=1
	fi
	if ((rc)); then
		log "run hack/install-deps.sh as root to install them"
	fi
	exit "$rc"
fi

if $need_go; then
	log "go not found (expected /usr/local/go/bin/go); install Go first"
	exit 1
fi
if ((${#missing_pkgs[@]})) || $need_ctrd2 || $need_dockerd; then
	if [ "$(id -u)" != 0 ]; then
		log "must run as root to install: ${missing_pkgs[*]} $($need_ctrd2 && echo "containerd-${CTRD2_VERSION}") $($need_dockerd && echo "dockerd-${MOBY_VERSION}")"
		exit 1
	fi
fi

if ((${#missing_pkgs[@]})); then
	log "installing ${missing_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update </dev/null
	apt-get install -y --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing_pkgs[@]}" </dev/null
fi

if $need_ctrd2; then
	log "building containerd ${CTRD2_VERSION} into ${CTRD2_BIN}"
	mkdir -p "${CTRD2_BIN}"
	# Outside any module, so the repository's go.mod plays no part.
	(cd / && GOBIN="${CTRD2_BIN}" GOFLAGS=-buildvcs=false go install \
		"github.com/containerd/containerd/v2/cmd/containerd@v${CTRD2_VERSION}" \
		"github.com/containerd/containerd/v2/cmd/ctr@v${CTRD2_VERSION}" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v${CTRD2_VERSION}")
	containerd2_ok || {
		log "containerd ${CTRD2_VERSION} still not usable in ${CTRD2_BIN}"
		exit 1
	}
fi

if $need_dockerd; then
	log "building dockerd ${MOBY_VERSION} into ${MOBY_BIN}"
	mkdir -p "${MOBY_BIN}"
	(cd / && GOBIN="${MOBY_BIN}" GOFLAGS=-buildvcs=false go install \
		"github.com/moby/moby/v2/cmd/dockerd@v${MOBY_VERSION}")
	dockerd_ok || {
		log "dockerd ${MOBY_VERSION} still not usable in ${MOBY_BIN}"
		exit 1
	}
fi

log "ok: $(/usr/bin/containerd --version | awk '{print $3}'), $("${CTRD2_BIN}/containerd" --version | awk '{print $3}'), runc $(/usr/bin/runc --version | awk 'NR==1{print $3}'), busybox $(/bin/busybox | awk 'NR==1{print $2}')"
