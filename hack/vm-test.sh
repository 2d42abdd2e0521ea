#!/usr/bin/env bash
# Runs the integration suites (./integration, then the Go-client one in
# ./integration/client and the CRI's in ./integration/client/cri), then
# hack/systemd-test.sh (the systemd cgroup
# driver's cases against a private systemd), inside a KVM guest booted
# with the cgroup v2 hierarchy only, since most hosts are pure v2 and the
# one this may run on is not. The guest is the Debian kernel from /boot
# (installed by hack/install-deps.sh) with a tiny busybox initramfs; its
# root is the host's root shared read-only over virtio-9p under a tmpfs
# overlay, so it runs the host's containerd 1.6 and 2.4.2, systemd,
# busybox and libc with no image to build. The test binaries and the shim
# are built here: the guest has no Go toolchain.
#
#   hack/vm-test.sh [go test flags...]   e.g. hack/vm-test.sh -run TestRun
#   (the flags are for the three suites; systemd-test.sh keeps -run Systemd)
#
# Without a usable /dev/kvm it prints why, says the tests were SKIPPED and
# exits 0. Otherwise it exits with the exit code of the first step that
# failed (0 when all passed), 124 on timeout and 125 when the guest
# did not get as far as the tests.
#
# Environment:
#   MINI_SHIM_BIN          shim to test (default: `make build`'s output)
#   MINI_TEST_CONTAINERD   containerd versions in the guest (default 1.6,2.4)
#   MINI_TEST_RUNTIMES     runtimes in the guest (default io.containerd.mini.v2)
#   VMTEST_ACCEL           kvm (default): skip without usable KVM; tcg: run
#                          under emulation (about 50x slower: timing-bound
#                          cases fail); auto: kvm, else tcg
#   VMTEST_TIMEOUT         seconds before qemu is killed (default 600 with
#                          kvm, 1800 with tcg)
#   VMTEST_BOOT_TIMEOUT    seconds for the kernel to reach /init (default 60)
#   VMTEST_MEM, VMTEST_CPUS  guest size (default 2048 MiB, 2 cpus)
#   VMTEST_KERNEL          kernel version in /boot to boot (default: newest
#                          one whose modules have 9p)
#   VMTEST_KEEP=1          keep the work dir (console log, test log, initramfs)
#   VMTEST_SYSTEMD=0       leave systemd-test.sh out (a focused run)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ACCEL="${VMTEST_ACCEL:-kvm}"
TIMEOUT="${VMTEST_TIMEOUT:-}"
# Kernel start to /init takes about 2s with KVM, 4s under TCG.
BOOT_TIMEOUT="${VMTEST_BOOT_TIMEOUT:-60}"
MEM="${VMTEST_MEM:-2048}"
CPUS="${VMTEST_CPUS:-2}"
# What the initramfs needs to reach the host's files: virtio-pci transport,
# 9p over virtio, and overlayfs for the writable root.
MODULES=(virtio_pci 9pnet_virtio 9p overlay)

export PATH="/usr/local/go/bin:${PATH}"

LOG_TAG=vm-test
# shellcheck source=hack/lib.sh
. "$REPO/hack/lib.sh"

# kvm_problem prints why KVM cannot be used, or nothing when it can.
kvm_problem() {
	if [ ! -e /dev/kvm ]; then
		echo "/dev/kvm does not exist (no hardware virtualization, or nested KVM is off)"
	elif [ ! -c /dev/kvm ]; then
		echo "/dev/kvm is not a character device"
	elif ! { : 3<>/dev/kvm; } 2>/dev/null; then
		echo "cannot open /dev/kvm read-write as $(id -un) (uid $(id -u))"
	elif [ -d /sys/module/kvm_pvm ] && [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
		# PVM (pagetable-based virtualization, no VMX/SVM) runs PVM-built
		# guest kernels; a stock Debian kernel spends minutes in its
		# decompressor and never reaches /init.
		echo "it is PVM (kvm_pvm, no kvm_intel/kvm_amd), which cannot boot a stock Debian kernel at usable speed"
	fi
}

skip_loudly() {
	banner "cgroup v2 tests SKIPPED: /dev/kvm not usable: $1"
	exit 0
}

# pick_kernel prints the version of the newest /boot kernel whose module
# tree can give us 9p (Debian's cloud kernel, for one, has no 9p).
pick_kernel() {
	local v
	if [ -n "${VMTEST_KERNEL:-}" ]; then
		echo "$VMTEST_KERNEL"
		return
	fi
	for v in $(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -rV); do
		if modprobe -S "$v" -D 9p >/dev/null 2>&1; then
			echo "$v"
			return
		fi
	done
}

# module_files prints, dependencies first and each once, the .ko files
# kernel $1 needs for MODULES; built-in ones print nothing.
module_files() {
	local kver=$1 m
	for m in "${MODULES[@]}"; do
		modprobe -S "$kver" -D "$m" || die "kernel $kver: cannot resolve module $m"
	done | awk '$1 == "insmod" && !seen[$2]++ {print $2}'
}

# build_initramfs writes a gzipped newc cpio to $3 holding busybox,
# hack/vm/init and the modules of kernel $1, staged in $2.
build_initramfs() {
	local kver=$1 stage=$2 out=$3 ko dst
	mkdir -p "$stage/bin"
	cp /bin/busybox "$stage/bin/busybox"
	install -m 0755 "$REPO/hack/vm/init" "$stage/init"
	: >"$stage/modules.order"
	while read -r ko; do
		dst="$stage${ko%.xz}"
		dst="${dst%.zst}"
		mkdir -p "$(dirname "$dst")"
		# busybox insmod wants plain .ko files.
		case "$ko" in
		*.xz) xz -dc "$ko" >"$dst" ;;
		*.zst) zstd -qdc "$ko" >"$dst" ;;
		*) cp "$ko" "$dst" ;;
		esac
		echo "${dst#"$stage"}" >>"$stage/modules.order"
	done < <(module_files "$kver")
	(cd "$stage" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$out"
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	# Only what this script started, by pid.
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill -KILL "$qpid" 2>/dev/null || true
	fi
	if [ -n "$tailpid" ] && kill -0 "$tailpid" 2>/dev/null; then
		kill "$tailpid" 2>/dev/null || true
	fi
	if [ "${VMTEST_KEEP:-}" = 1 ]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
}

# Everything runs from main so that bash has read the whole script before
# it starts: editing this file during a 10-minute run cannot derail it.
main() {
	# --- 1. KVM or a loud skip ------------------------------------------------
	problem="$(kvm_problem)"
	case "$ACCEL" in
	kvm) [ -z "$problem" ] || skip_loudly "$problem" ;;
	tcg) ;;
	auto)
		if [ -n "$problem" ]; then
			log "/dev/kvm not usable: $problem"
			log "running under TCG emulation instead (slower)"
			ACCEL=tcg
		else
			ACCEL=kvm
		fi
		;;
	*) die "VMTEST_ACCEL=$ACCEL: want kvm, tcg or auto" ;;
	esac
	if [ -z "$TIMEOUT" ]; then
		# The suite takes about 15s natively and 10 minutes under TCG.
		if [ "$ACCEL" = kvm ]; then TIMEOUT=600; else TIMEOUT=1800; fi
	fi

	command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found; run hack/install-deps.sh"
	[ -x /bin/busybox ] || die "/bin/busybox not found; run hack/install-deps.sh"
	kver="$(pick_kernel)"
	[ -n "$kver" ] || die "no kernel in /boot with 9p modules; run hack/install-deps.sh (linux-image-amd64)"
	kernel="/boot/vmlinuz-${kver}"
	[ -r "$kernel" ] || die "kernel $kernel not readable"

	work="$(mktemp -d "${TMPDIR:-/tmp}/vmtest.XXXXXX")"
	share="$work/share"
	mkdir -p "$share/bin"
	qpid=""
	tailpid=""
	trap cleanup EXIT

	# --- 2. Build on the host -------------------------------------------------
	t0=$SECONDS
	log "building integration.test, client.test, cri.test and the shim"
	(cd "$REPO" && go test -c -o "$share/integration.test" ./integration/)
	# A module of its own (containerd's Go client): built from its directory.
	(cd "$REPO/integration/client" && go test -c -o "$share/" . ./cri/)
	copy_shim_binaries "$share/bin"
	t_build=$((SECONDS - t0))

	# --- 3. initramfs and what the guest reads --------------------------------
	t0=$SECONDS
	build_initramfs "$kver" "$work/initramfs" "$work/initramfs.gz"
	cp "$REPO/hack/vm/guest-run.sh" "$share/guest-run.sh"
	cp "$REPO/hack/systemd-test.sh" "$REPO/hack/lib.sh" "$share/"
	mapfile -t VMTEST_ARGS < <(go_test_args -v -count=1 -timeout="$((TIMEOUT > 120 ? TIMEOUT - 60 : TIMEOUT))s" "$@")
	{
		printf 'MINI_TEST_CONTAINERD=%q\n' "${MINI_TEST_CONTAINERD:-1.6,2.4}"
		printf 'MINI_TEST_RUNTIMES=%q\n' "${MINI_TEST_RUNTIMES:-io.containerd.mini.v2}"
		# Under emulation (tens of times slower) the long cases (soak, load,
		# the restart under 20 containers) skip or run smaller.
		if [ "$ACCEL" = tcg ]; then printf 'MINI_TEST_EMULATED=1\n'; fi
		printf 'VMTEST_WORKDIR=%q\n' "$REPO/integration"
		printf 'VMTEST_REPO=%q\n' "$REPO"
		printf 'VMTEST_SYSTEMD=%q\n' "${VMTEST_SYSTEMD:-1}"
		declare -p VMTEST_ARGS
	} >"$share/env"
	t_initramfs=$((SECONDS - t0))
	log "kernel $kver, initramfs $(du -k "$work/initramfs.gz" | cut -f1) KiB (modules: $(tr '\n' ' ' <"$work/initramfs/modules.order" | sed 's|[^ ]*/||g'))"

	# --- 4. Boot --------------------------------------------------------------
	console="$work/console.log"
	: >"$console"
	cmdline="console=ttyS0 systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all quiet panic=-1"
	if [ "$ACCEL" = kvm ]; then
		accel_args=(-accel kvm -cpu host)
	else
		# One host thread per vcpu; "max" is the richest cpu TCG emulates.
		accel_args=(-accel "tcg,thread=multi" -cpu max)
	fi
	log "booting with $ACCEL (timeout ${TIMEOUT}s)"
	t0=$SECONDS
	qemu-system-x86_64 \
		"${accel_args[@]}" -m "$MEM" -smp "$CPUS" \
		-nodefaults -no-user-config -display none -monitor none -no-reboot \
		-serial "file:$console" \
		-kernel "$kernel" -initrd "$work/initramfs.gz" -append "$cmdline" \
		-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
		-virtfs "local,path=$share,mount_tag=vmtest,security_model=none,multidevs=remap" \
		</dev/null >"$work/qemu.log" 2>&1 &
	qpid=$!
	# Live console; tail ends by itself once qemu has exited.
	tail -s 0.2 -n +1 -f --pid="$qpid" "$console" &
	tailpid=$!

	timed_out=false
	no_boot=false
	while kill -0 "$qpid" 2>/dev/null; do
		if ((SECONDS - t0 >= BOOT_TIMEOUT)) && ! grep -q -a 'VMTEST-INIT' "$console"; then
			no_boot=true
			log "the guest kernel did not reach /init within ${BOOT_TIMEOUT}s: killing qemu (pid $qpid)"
			kill -KILL "$qpid" 2>/dev/null || true
			break
		fi
		if ((SECONDS - t0 >= TIMEOUT)); then
			timed_out=true
			log "timeout after ${TIMEOUT}s: killing qemu (pid $qpid)"
			kill -TERM "$qpid" 2>/dev/null || true
			sleep 5
			kill -KILL "$qpid" 2>/dev/null || true
			break
		fi
		sleep 0.5
	done
	qrc=0
	# Braces: keeps bash's "Killed" job notice off the output.
	{ wait "$qpid"; } 2>/dev/null || qrc=$?
	qpid=""
	wait "$tailpid" 2>/dev/null || true
	tailpid=""
	t_vm=$((SECONDS - t0))

	# --- 5. Verdict -----------------------------------------------------------
	exit_line="$(tr -d '\r' <"$console" | grep -a -o 'VMTEST-EXIT=[0-9]*' | tail -n 1 || true)"
	booted_at="$(tr -d '\r' <"$console" | sed -n 's/^VMTEST-INFO: guest up after \([0-9.]*\)s.*/\1/p' | head -n 1)"
	# took STEP: how long the guest said STEP took, in seconds ("?": it
	# did not say).
	took() {
		local s
		s="$(tr -d '\r' <"$console" | sed -n "s/^VMTEST-INFO: $1 took \([0-9]*\)s.*/\1/p" | tail -n 1)"
		echo "${s:-?}"
	}
	log "timings: build ${t_build}s, initramfs ${t_initramfs}s, vm ${t_vm}s (guest ready after ${booted_at:-?}s, integration.test $(took integration.test)s, client.test $(took client.test)s, cri.test $(took cri.test)s, systemd-test.sh $(took systemd-test.sh)s)"
	if $no_boot && [ "$ACCEL" = kvm ]; then
		# KVM that opens but cannot run this kernel is as good as none.
		skip_loudly "the guest kernel did not reach /init within ${BOOT_TIMEOUT}s under KVM"
	fi
	if $no_boot; then
		log "FAILED: the guest kernel did not reach /init within ${BOOT_TIMEOUT}s"
		exit 125
	fi
	if $timed_out; then
		log "FAILED: guest did not finish within ${TIMEOUT}s"
		exit 124
	fi
	if [ -z "$exit_line" ]; then
		log "FAILED: the guest never reported VMTEST-EXIT (qemu exit status $qrc); qemu said:"
		cat "$work/qemu.log" >&2
		exit 125
	fi
	rc="${exit_line#VMTEST-EXIT=}"
	if [ "$rc" = 0 ]; then
		log "cgroup v2 integration suite PASSED (kernel $kver)"
	else
		log "cgroup v2 integration suite FAILED with exit code $rc (kernel $kver)"
	fi
	exit "$rc"
}

main "$@"
