#!/bin/bash
# Second stage in the cgroup v2 guest, started by hack/vm/init after
# switch_root: the root is the host's (copy-on-write), /vmtest is the host
# directory hack/vm-test.sh prepared (test binaries, shim, env). Runs the
# integration suites (integration.test, client.test, cri.test), then the systemd
# cgroup driver's cases against a private systemd (systemd-test.sh), and
# reports "VMTEST-EXIT=<code>" on the console, the first failing step's
# code or 0, then powers the guest off. Never returns: init must not exit.
set -uo pipefail

# shellcheck disable=SC2317 # run by the EXIT trap
poweroff_now() {
	sync
	/bin/busybox poweroff -f 2>/dev/null
	echo o >/proc/sysrq-trigger
	sleep 30
}
trap poweroff_now EXIT

report() {
	echo "VMTEST-EXIT=$1"
	echo "$1" >/vmtest/exit 2>/dev/null || true
}

# shellcheck source=/dev/null
. /vmtest/env || {
	echo "VMTEST-INIT-ERROR: cannot read /vmtest/env"
	report 125
	exit
}

echo "VMTEST-INFO: guest up after $(cut -d' ' -f1 /proc/uptime)s"
# devtmpfs has none of these; bash's process substitution (used by
# systemd-test.sh) needs /dev/fd.
for l in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
	[ -e "/dev/${l%%:*}" ] || ln -s "${l#*:}" "/dev/${l%%:*}"
done
/bin/busybox hostname vmtest
/bin/busybox ip link set lo up 2>/dev/null || true

cg=/sys/fs/cgroup
# Containers can only use the controllers their ancestors delegate; the
# root's subtree_control is what systemd would have set up on a real host.
read -r -a controllers <"$cg/cgroup.controllers"
for c in "${controllers[@]}"; do
	echo "+$c" >"$cg/cgroup.subtree_control" 2>/dev/null ||
		echo "VMTEST-INFO: could not enable controller $c"
done
echo "VMTEST-INFO: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/{print $2 " kB"}' /proc/meminfo)"
echo "VMTEST-INFO: /sys/fs/cgroup is $(stat -fc %T "$cg")"
echo "VMTEST-INFO: cgroup.controllers: $(cat "$cg/cgroup.controllers")"
echo "VMTEST-INFO: cgroup.subtree_control: $(cat "$cg/cgroup.subtree_control")"
echo "VMTEST-INFO: /proc/self/cgroup: $(cat /proc/self/cgroup)"
echo "VMTEST-INFO: v1 hierarchies mounted: $(awk '$3 == "cgroup"' /proc/mounts | wc -l)"
# AppArmor's profiles are loaded through securityfs, which a host mounts at
# boot; the AppArmor cases load one of their own.
if [ -d /sys/kernel/security ] && ! awk '$3 == "securityfs" {f=1} END {exit !f}' /proc/mounts; then
	mount -t securityfs securityfs /sys/kernel/security 2>/dev/null ||
		echo "VMTEST-INFO: could not mount securityfs"
fi
echo "VMTEST-INFO: AppArmor enabled: $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo no)"

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp
export MINI_SHIM_BIN=/vmtest/bin/containerd-shim-mini-v2
export MINI_TEST_CONTAINERD MINI_TEST_RUNTIMES MINI_TEST_EMULATED
: >/vmtest/test.log

# run_suite BIN DIR runs /vmtest/BIN from DIR (its package's directory on
# the host) and returns its exit code; output goes to the console and is
# appended to /vmtest/test.log.
run_suite() {
	local bin=$1 dir=$2 start rc
	echo "VMTEST-INFO: running $bin ${VMTEST_ARGS[*]} (MINI_TEST_CONTAINERD=$MINI_TEST_CONTAINERD MINI_TEST_RUNTIMES=$MINI_TEST_RUNTIMES)"
	start=$(date +%s)
	(cd "$dir" 2>/dev/null || cd /vmtest || true; exec "/vmtest/$bin" "${VMTEST_ARGS[@]}" </dev/null 2>&1) | tee -a /vmtest/test.log
	rc=${PIPESTATUS[0]}
	echo "VMTEST-INFO: $bin took $(($(date +%s) - start))s"
	return "$rc"
}

# Every suite runs even when one before failed: its result is worth
# having; the first failure's code is the one reported.
rc=0
keep_first() { [ "$rc" != 0 ] || rc=$1; }
run_suite integration.test "$VMTEST_WORKDIR" || keep_first $?
run_suite client.test "$VMTEST_WORKDIR/client" || keep_first $?
# The CRI's: containerd 2.4 with its CRI plugins.
run_suite cri.test "$VMTEST_WORKDIR/client/cri" || keep_first $?

# The systemd driver on cgroup v2: hack/systemd-test.sh boots systemd as
# PID 1 of private namespaces below this root cgroup and runs
# integration.test's Systemd cases inside (the user's go test flags are
# for the suites above; it keeps its own -run Systemd). It fails rather
# than skips here: systemd is on the host root, so a skip would hide a
# breakage. systemd boots in about 4s under emulation; the boot timeout
# leaves it room on a slow host.
# A focused run (VMTEST_SYSTEMD=0) leaves it out.
if [ "$VMTEST_SYSTEMD" != 0 ]; then
	echo "VMTEST-INFO: running systemd-test.sh (MINI_TEST_CONTAINERD=$MINI_TEST_CONTAINERD MINI_TEST_RUNTIMES=$MINI_TEST_RUNTIMES)"
	start=$(date +%s)
	SDTEST_REQUIRE=1 SDTEST_BOOT_TIMEOUT=180 SDTEST_TEST_BIN=/vmtest/integration.test \
		SDTEST_REPO="$VMTEST_REPO" bash /vmtest/systemd-test.sh </dev/null 2>&1 | tee -a /vmtest/test.log
	sd_rc=${PIPESTATUS[0]}
	echo "VMTEST-INFO: systemd-test.sh took $(($(date +%s) - start))s"
	keep_first "$sd_rc"
fi

# The suites remove what they made; anything left in the cgroup tree is a
# leak the v1-era checks might have missed.
left=$(find "$cg" -mindepth 1 -type d 2>/dev/null)
if [ -n "$left" ]; then
	echo "VMTEST-INFO: cgroups left after the suite:"
	echo "$left"
fi
report "$rc"
exit
