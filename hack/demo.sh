#!/usr/bin/env bash
# Starts a private containerd, runs one container with io.containerd.mini.v2,
# shows its output, exit code and task events, and tears everything down.
# CONTAINERD=1.6 (Debian's) or CONTAINERD=2.4 (/opt/containerd-2.4.2/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
case "${CONTAINERD:-2.4}" in
1.6) bindir=/usr/bin; cfgver=2; disabled='"io.containerd.grpc.v1.cri"' ;;
2.4) bindir=/opt/containerd-2.4.2/bin; cfgver=3
	disabled='"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri"' ;;
*) echo "CONTAINERD must be 1.6 or 2.4" >&2; exit 2 ;;
esac

dir=$(mktemp -d /tmp/mini-demo.XXXXXX)
cpid=""
evpid=""
cleanup() {
	[[ -n "$evpid" ]] && kill "$evpid" 2>/dev/null || true
	if [[ -n "$cpid" ]]; then
		kill "$cpid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$cpid" 2>/dev/null || true
	fi
	# Anything containerd left mounted under our dirs goes before the dirs do.
	grep -o " $dir[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

rootfs=$dir/rootfs
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
	[[ "$applet" == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"

cat >"$dir/config.toml" <<TOML
version = $cfgver
root = "$dir/root"
state = "$dir/state"
disabled_plugins = [$disabled]
[grpc]
  address = "$dir/c.sock"
[ttrpc]
  address = "$dir/c.sock.ttrpc"
TOML
PATH="$repo/bin:$bindir:$PATH" "$bindir/containerd" --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
cpid=$!
ctr=("$bindir/ctr" -a "$dir/c.sock")
for _ in $(seq 100); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
echo "== containerd $("${ctr[@]}" version | awk '/Server/{s=1} s&&/Version/{print $2; exit}') on $dir/c.sock"

"${ctr[@]}" events >"$dir/events" 2>&1 &
evpid=$!
sleep 0.2
echo "== ctr run --rm --runtime io.containerd.mini.v2 --rootfs $rootfs demo /bin/sh -c 'echo hi from \$(hostname); exit 3'"
set +e
"${ctr[@]}" run --rm --runtime io.containerd.mini.v2 --rootfs "$rootfs" demo /bin/sh -c 'echo hi from $(hostname); exit 3'
status=$?
set -e
echo "== ctr exit code: $status"
sleep 0.3
echo "== events"
grep -E '/tasks/|/containers/' "$dir/events" | sed 's/^/   /'
