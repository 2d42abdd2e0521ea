#!/usr/bin/env bash
# Runs the systemd cgroup driver's integration tests (-run Systemd) against
# a real systemd on a host where systemd is not init. systemd 252 is booted
# as PID 1 of its own cgroup, pid, mount, uts, ipc and network namespaces,
# rooted at a fresh sub-cgroup of ours in every hierarchy, and the test
# binary (built here) is run inside those namespaces, where containerd, the
# shims and systemctl find it as the host's systemd.
# On a cgroup v2 host the sub-cgroup gets two leaves, as systemd-nspawn
# lays a container out: init.scope for systemd, which sees the sub-cgroup
# as its root cgroup (its controllers enabled before systemd starts), and
# one for the tests, which must start below that root for systemd to be
# allowed to move their processes into its units.
#
#   hack/systemd-test.sh [go test flags...]   e.g. hack/systemd-test.sh -run TestSystemdCgroupDriver/
#
# That systemd must never touch the host. An earlier try that let it load
# the host's units had systemd-tmpfiles --boot wipe the host's /tmp, so:
#   - its unit search path is a private directory holding one empty target,
#     and generators are pointed at an empty directory: no host unit loads;
#   - /run, /tmp and /dev are private tmpfs instances (the work dir is bound
#     back into /tmp), every other mount is read-only, /proc/sys and
#     /proc/sysrq-trigger too;
#   - it runs with container=... in its environment (so it skips what only
#     a real boot does) and without CAP_SYS_TIME, CAP_SYS_MODULE and a few
#     others in its bounding set;
#   - after it is stopped, everything it may have left is looked for
#     (processes of its pid namespace, its cgroups in every hierarchy,
#     hierarchies the kernel did not have before, mounts, /dev, /run, /etc/systemd, the journal)
#     and the run fails if anything is found.
# systemd tries to mount the v1 controllers nobody mounted (net_cls,
# perf_event, ...), which would make them hierarchies every process on the
# host shows in /proc/self/cgroup; the kernel lets only the initial cgroup
# namespace create a hierarchy, so in its own namespace those mounts fail
# (the leak check would see a new hierarchy). Still, `make test` runs this
# as a step of its own, after the main integration suite.
#
# Where systemd cannot be started (no /lib/systemd/systemd, no cgroup
# namespaces, it does not boot) it prints a "systemd tests SKIPPED" banner
# and exits 0; SDTEST_REQUIRE=1 makes that a failure. Where systemd already
# is init, the tests run directly against it. Otherwise it exits with the
# test binary's status, or 1 if something was left behind.
#
# Environment:
#   MINI_SHIM_BIN          shim to test (default: `make build`'s output)
#   SDTEST_TEST_BIN        integration.test to run (default: built here;
#                          the cgroup v2 guest has no Go toolchain)
#   SDTEST_REPO            the source tree, for the tests' working directory
#                          (default: the one this script is in)
#   MINI_TEST_CONTAINERD   containerd versions (default 1.6,2.4)
#   MINI_TEST_RUNTIMES     runtimes (default io.containerd.mini.v2)
#   SDTEST_TIMEOUT         seconds for the test binary (default 300)
#   SDTEST_BOOT_TIMEOUT    seconds for systemd to report running (default 30)
#   SDTEST_REQUIRE=1       fail instead of skipping when systemd cannot run
#   SDTEST_KEEP=1          keep the work dir (systemd's console log)
#   SDTEST_EXEC            a bash command to run inside instead of the tests
#                          (to look around: SDTEST_EXEC='systemctl status')
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
# SDTEST_REPO: the cgroup v2 guest runs a copy of this script from its
# share, away from the tree.
REPO="${SDTEST_REPO:-$(cd "$(dirname "$SELF")/.." && pwd)}"
SYSTEMD=/lib/systemd/systemd
TIMEOUT="${SDTEST_TIMEOUT:-300}"
BOOT_TIMEOUT="${SDTEST_BOOT_TIMEOUT:-30}"
# What systemd needs no part of here and could use to reach beyond its
# namespaces: the clock (it may "fix" the time or the kernel's timezone),
# kernel modules, the kernel log, raw I/O, wake alarms.
DROP_CAPS=-sys_time,-sys_module,-syslog,-sys_rawio,-wake_alarm,-block_suspend
# Names in systemd's private /run.
UNIT_DIR=/run/mini-sdtest/units
GEN_DIR=/run/mini-sdtest/generators
TARGET=mini-sdtest.target
# cgroup v2: below our sub-cgroup, the leaf systemd is started in (the name
# it gives its own cgroup, as systemd-nspawn lays a container out) and the
# one the tests run from. The kernel keeps processes out of a non-root
# cgroup whose controllers are enabled for its children.
INIT_LEAF=init.scope
RUNNER_LEAF=mini-sdtest-runner
# The namespaces besides the cgroup one; --kill-child: should unshare be
# killed with us (a SIGKILL to the process group, which no trap sees),
# systemd and with it its whole pid namespace goes too.
NS_ARGS=(--pid --mount --uts --ipc --net --fork --propagation private --mount-proc --kill-child)

export PATH="/usr/local/go/bin:${PATH}"

LOG_TAG=systemd-test
# ${SELF%/*}, not $(dirname): this also runs as the process whose first
# child is taken for systemd, so it must not fork before unshare does.
# shellcheck source=hack/lib.sh
. "${SELF%/*}/lib.sh"

skip_loudly() {
	if [ "${SDTEST_REQUIRE:-}" = 1 ]; then
		die "systemd cannot run here ($1) and SDTEST_REQUIRE=1"
	fi
	banner "systemd cgroup driver tests SKIPPED: $1"
	exit 0
}

# systemd_problem prints why a private systemd cannot be started here, or
# nothing when it can.
systemd_problem() {
	local c
	if [ ! -x "$SYSTEMD" ]; then
		echo "$SYSTEMD not found (apt-get install systemd; hack/install-deps.sh does)"
		return
	fi
	for c in unshare nsenter setpriv systemctl mknod; do
		command -v "$c" >/dev/null || {
			echo "$c not found"
			return
		}
	done
	if [ ! -e /proc/self/ns/cgroup ]; then
		echo "the kernel has no cgroup namespaces"
	elif ! awk '$3 == "cgroup" || $3 == "cgroup2" {found=1} END {exit !found}' /proc/self/mounts; then
		echo "no cgroup hierarchy is mounted"
	fi
}

# hierarchy_key names a hierarchy the way /proc/self/cgroup does from its
# superblock options: "" for cgroup2, else the controllers (and name=).
hierarchy_key() {
	local fs=$1 opts=$2
	if [ "$fs" = cgroup2 ]; then
		echo ""
	else
		tr , '\n' <<<"$opts" | grep -E '^name=|^[a-z_]+$' | grep -vx 'rw\|ro' | paste -sd,
	fi
}

# unified says whether this host has the cgroup v2 hierarchy alone (at
# /sys/fs/cgroup, from the mount list in $work/hier); a hybrid host has it
# at /sys/fs/cgroup/unified. Builtins only: boot_systemd takes the first
# child of unshare's process for PID 1 of the new namespaces, so nothing
# there may fork before unshare does.
unified() {
	local mp fs opts
	while read -r mp fs opts; do
		[ "$mp" = /sys/fs/cgroup ] && [ "$fs" = cgroup2 ] && return 0
	done <"$work/hier"
	return 1
}

# snapshot writes what the leak check compares, before and after: cgroup
# hierarchies the kernel has, mounts of this namespace, and the host paths
# systemd has been seen to write when it was let loose.
snapshot() {
	local out=$1
	{
		echo "## hierarchies"
		cut -d: -f2 /proc/self/cgroup | sort
		echo "## mounts"
		# Other suites' containers mount under their own temp dirs; only
		# mounts elsewhere (or under ours) are this run's business.
		awk '{print $5}' /proc/self/mountinfo | grep -v '^/tmp/' | sort
		echo "## /dev"
		ls -A /dev
		echo "## /run"
		ls -A /run
		echo "## /run/systemd"
		ls -A /run/systemd 2>/dev/null || true
		echo "## /etc/systemd"
		find /etc/systemd 2>/dev/null | sort
		echo "## /var/log/journal"
		find /var/log/journal 2>/dev/null | sort
		echo "## /etc/machine-id"
		cat /etc/machine-id 2>/dev/null || true
	} >"$out"
}

# ---------------------------------------------------------------------------
# cgroup v2 only: in the new cgroup namespace, whose root is our sub-cgroup
# $2, but still in the host's other namespaces (and its /sys/fs/cgroup).
# The namespace's root stays where it was made when we leave it for the
# init leaf, which frees it to have its controllers enabled: systemd, which
# takes it for the root cgroup, would not manage to (its -.slice showed an
# empty cgroup.subtree_control and runc found no cpu.weight). Then the
# other namespaces, the same pid on (unshare without --fork does not fork).
cgns_step() {
	set -euo pipefail
	local work=$1 d=$2 c ctrls
	echo "$$" >"$d/$INIT_LEAF/cgroup.procs"
	read -r -a ctrls <"$d/cgroup.controllers"
	for c in "${ctrls[@]}"; do
		echo "+$c" >"$d/cgroup.subtree_control"
	done
	exec unshare "${NS_ARGS[@]}" bash "$SELF" --inner "$work"
}

# ---------------------------------------------------------------------------
# Inside the new namespaces, as their PID 1 until it execs systemd. Every
# mount here is private to them (unshare --propagation private).
inner() {
	set -euo pipefail
	local work=$1 mp fs opts name target o
	# /run first: it carries the work dir across the /tmp tmpfs. -n: with
	# the host's /run still under it, libmount would make its utab
	# directory (/run/mount) there, on a host that had none.
	mount -n -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
	mkdir /run/.work
	mount --bind "$work" /run/.work
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
	mkdir -p "$work"
	mount --bind /run/.work "$work"
	umount /run/.work
	rmdir /run/.work

	# A /dev of its own: whatever systemd makes there stays here.
	mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
	mknod -m 0666 /dev/null c 1 3
	mknod -m 0666 /dev/zero c 1 5
	mknod -m 0666 /dev/full c 1 7
	mknod -m 0666 /dev/random c 1 8
	mknod -m 0666 /dev/urandom c 1 9
	mknod -m 0666 /dev/tty c 5 0
	mkdir /dev/pts /dev/shm
	mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
	ln -s pts/ptmx /dev/ptmx
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
	ln -s /proc/self/fd /dev/fd
	ln -s /proc/self/fd/0 /dev/stdin
	ln -s /proc/self/fd/1 /dev/stdout
	ln -s /proc/self/fd/2 /dev/stderr
	# systemd logs to its console: the console log in the work dir.
	touch /dev/console
	mount --bind "$work/console.log" /dev/console

	# Everything inherited from the host read-only, except what was just
	# made private and /proc (a fresh one for the new pid namespace).
	while read -r mp; do
		case "$mp" in
		/run | /run/* | /tmp | /tmp/* | /dev | /dev/* | /proc | /proc/*) continue ;;
		"$work" | "$work"/*) continue ;;
		esac
		mount -o remount,bind,ro "$mp" 2>/dev/null || echo "inner: could not make $mp read-only" >&2
	done < <(awk '{print $5}' /proc/self/mountinfo | sort -u)
	for mp in /proc/sys /proc/sysrq-trigger; do
		[ -e "$mp" ] || continue
		mount --bind "$mp" "$mp"
		mount -o remount,bind,ro "$mp"
	done

	# Fresh mounts of the host's hierarchies: inside the new cgroup
	# namespace each is rooted at our sub-cgroup.
	if unified; then
		# The inherited mount would show systemd the host's whole tree (and
		# is read-only by now); the new one is rooted at the namespace's.
		umount /sys/fs/cgroup
		mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
	else
		mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
	fi
	while read -r mp fs opts; do
		[ "$mp" != /sys/fs/cgroup ] || continue
		mkdir -p "$mp"
		if [ "$fs" = cgroup2 ]; then
			mount -t cgroup2 cgroup2 "$mp"
		else
			o="$(hierarchy_key cgroup "$opts")"
			case "$o" in name=*) o="none,$o" ;; esac
			mount -t cgroup -o "$o" cgroup "$mp"
		fi
	done <"$work/hier"
	while read -r name target; do
		ln -s "$target" "/sys/fs/cgroup/$name"
	done <"$work/links"

	mkdir -p /run/lock "$UNIT_DIR" "$GEN_DIR"
	# sd_booted(3)'s marker, which is also what our runtime and the tests
	# look for.
	mkdir -p /run/systemd/system
	printf '[Unit]\nDescription=systemd-test empty boot target\nDefaultDependencies=no\n' >"$UNIT_DIR/$TARGET"
	# The search path also names where systemd keeps transient units and
	# their runtime drop-ins (both on this private /run): without them a
	# daemon-reload would forget every scope's properties.
	exec env -i container=mini-systemd-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		SYSTEMD_UNIT_PATH="$UNIT_DIR:/run/systemd/transient:/run/systemd/system.control" SYSTEMD_GENERATOR_PATH="$GEN_DIR" \
		SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$GEN_DIR" \
		setpriv --bounding-set "$DROP_CAPS" -- \
		"$SYSTEMD" --unit="$TARGET" --log-target=console --show-status=no
}

# ---------------------------------------------------------------------------
# On the host.

# in_systemd runs a command in systemd's namespaces from the script's own
# cgroups (so only for short things that start nothing lasting).
in_systemd() {
	nsenter -t "$sdpid" -m -p -C -u -i -n -- "$@"
}

# boot_systemd starts the private systemd and waits until it says it is
# running; on failure it prints why and returns 1.
boot_systemd() {
	local mp fs opts key path d i state v2dir=""
	: >"$work/console.log"
	: >"$work/cgdirs"
	while read -r mp fs opts; do
		key="$(hierarchy_key "$fs" "$opts")"
		path="$(awk -F: -v k="$key" '$2 == k {print $3; exit}' /proc/self/cgroup)"
		d="${mp}${path%/}/$NAME"
		if ! mkdir "$d"; then
			echo "cannot make the cgroup $d"
			return 1
		fi
		echo "$d" >>"$work/cgdirs"
		# v1 cpuset starts a new cgroup with no cpus and no memory nodes.
		if [ "$fs" = cgroup ] && [ -e "$d/cpuset.cpus" ] && ! { cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus" &&
			cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"; }; then
			echo "cannot set up cpuset $d"
			return 1
		fi
		# cgroup v2: systemd can only hand out what our cgroup delegates.
		if [ "$fs" = cgroup2 ] && [ "$mp" = /sys/fs/cgroup ]; then
			if ! grep -qw memory "$d/cgroup.controllers"; then
				echo "cgroup v2: the memory controller is not delegated to $d"
				return 1
			fi
			mkdir "$d/$INIT_LEAF" "$d/$RUNNER_LEAF"
			v2dir=$d
		fi
	done <"$work/hier"

	(
		# The cgroup namespace's root is where unshare makes it.
		while read -r d; do echo "$BASHPID" >"$d/cgroup.procs"; done <"$work/cgdirs"
		if unified; then
			exec unshare --cgroup bash "$SELF" --cgns "$work" "$v2dir" </dev/null >>"$work/console.log" 2>&1
		fi
		exec unshare --cgroup "${NS_ARGS[@]}" bash "$SELF" --inner "$work" </dev/null >>"$work/console.log" 2>&1
	) &
	upid=$!
	echo "$upid" >"$work/unshare.pid"

	# unshare forks once; its child is PID 1 of the new namespaces, and
	# becomes systemd (same pid) through bash and setpriv.
	for ((i = 0; i < 500; i++)); do
		sdpid="$(cat /proc/"$upid"/task/*/children 2>/dev/null | tr -d ' ')"
		# A child still in our pid namespace is not the one unshare forks
		# (the teardown would take every host process for systemd's).
		if [ -n "$sdpid" ] && [ "$(readlink /proc/"$sdpid"/ns/pid 2>/dev/null)" = "$(readlink /proc/self/ns/pid)" ]; then
			sdpid=""
		fi
		if [ -n "$sdpid" ] && [ -z "$pidns" ]; then
			pidns="$(readlink /proc/"$sdpid"/ns/pid 2>/dev/null || true)"
			# cgroup v2: unshare itself, which only waits, back to our own
			# cgroup: systemd would find in its init.scope a process its
			# pid namespace cannot name.
			if unified && ! echo "$upid" >"$(dirname "$v2dir")/cgroup.procs"; then
				echo "cannot move unshare (pid $upid) out of $v2dir/$INIT_LEAF"
				return 1
			fi
		fi
		[ -n "$sdpid" ] && [ "$(cat /proc/"$sdpid"/comm 2>/dev/null)" = systemd ] && break
		kill -0 "$upid" 2>/dev/null || break
		sleep 0.02
	done
	if [ -z "$sdpid" ] || [ "$(cat /proc/"$sdpid"/comm 2>/dev/null)" != systemd ]; then
		echo "systemd did not start; console log:"
		tail -n 30 "$work/console.log"
		return 1
	fi
	for ((i = 0; ; i++)); do
		state="$(in_systemd systemctl is-system-running 2>/dev/null || true)"
		case "$state" in
		running) return 0 ;;
		degraded)
			log "systemd is degraded; failed units:"
			in_systemd systemctl --failed --no-legend >&2 || true
			return 0
			;;
		esac
		if ! kill -0 "$sdpid" 2>/dev/null; then
			echo "systemd exited during boot; console log:"
			tail -n 30 "$work/console.log"
			return 1
		fi
		if ((i * 50 >= BOOT_TIMEOUT * 1000)); then
			echo "systemd not running after ${BOOT_TIMEOUT}s (state: ${state:-no answer}); console log:"
			tail -n 30 "$work/console.log"
			return 1
		fi
		sleep 0.05
	done
}

# run_tests runs the test binary inside systemd's namespaces, from our
# sub-cgroups (the root of its cgroup namespace). Only for a subshell of its
# own (`run_tests &`), which becomes nsenter.
run_tests() {
	local d
	# Inside systemd's cgroup namespace a process can only be moved between
	# cgroups below its root: containerd, the shims and their containers
	# start here. On v2 the root has its controllers enabled, so a leaf.
	while read -r d; do
		if unified; then d="$d/$RUNNER_LEAF"; fi
		echo "$BASHPID" >"$d/cgroup.procs"
	done <"$work/cgdirs"
	# The tests' own directory, as go test runs them; the cgroup v2 guest
	# may not see the tree (a checkout under the host's /tmp), and the tests
	# need it only to build a shim, which they are given.
	cd "$REPO/integration" 2>/dev/null || cd "$work"
	exec env -u DBUS_SYSTEM_BUS_ADDRESS -u NOTIFY_SOCKET -u INVOCATION_ID \
		MINI_SHIM_BIN="$work/containerd-shim-mini-v2" \
		MINI_TEST_CONTAINERD="${MINI_TEST_CONTAINERD:-1.6,2.4}" \
		MINI_TEST_RUNTIMES="${MINI_TEST_RUNTIMES:-io.containerd.mini.v2}" \
		nsenter -t "$sdpid" -m -p -C -u -i -n -- "${TEST_CMD[@]}"
}

# stop_systemd powers the private systemd off (SIGRTMIN+14: at once, no
# units stopped one by one), which ends its pid namespace, then waits for
# unshare; what else was still in the namespace goes to $stray. If processes other than systemd are left (tests interrupted),
# it is SIGKILLed instead: its shutdown would stop, signal and then wait
# for them, and it notices only its own children dying, so the others
# (the tests are nsenter's) would cost it its whole timeout.
stop_systemd() {
	local i
	# Checked first: the pid may have ended and been reused.
	if [ -n "$sdpid" ] && [ -n "$pidns" ] && [ "$(readlink /proc/"$sdpid"/ns/pid 2>/dev/null)" = "$pidns" ]; then
		stray="$(pidns_procs | grep -v "^$sdpid " || true)"
		if [ "$(cat /proc/"$sdpid"/comm 2>/dev/null)" = systemd ] && [ -z "$stray" ]; then
			kill -s RTMIN+14 "$sdpid" 2>/dev/null || true
		else
			[ -z "$stray" ] || log "processes left in systemd's namespaces: SIGKILL to its PID 1 ends them all"
			kill -KILL "$sdpid" 2>/dev/null || true
		fi
		for ((i = 0; i < 100; i++)); do
			kill -0 "$sdpid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$sdpid" 2>/dev/null; then
			log "systemd (pid $sdpid) still there 5s after SIGRTMIN+14: SIGKILL"
			kill -KILL "$sdpid" 2>/dev/null || true
		fi
	fi
	if [ -n "$upid" ]; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$upid" 2>/dev/null || break
			sleep 0.05
		done
		kill -0 "$upid" 2>/dev/null && kill -KILL "$upid" 2>/dev/null
		wait "$upid" 2>/dev/null || true
	fi
}

# pidns_procs lists the processes still in systemd's pid namespace.
pidns_procs() {
	local p
	[ -n "$pidns" ] || return 0
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$pidns" ] && echo "${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)"
	done
	return 0
}

# remove_cgroups removes our sub-cgroup trees, deepest first; the killed
# processes may take a moment to leave them.
remove_cgroups() {
	local d i left
	[ -s "$work/cgdirs" ] || return 0
	for ((i = 0; i < 100; i++)); do
		left=0
		while read -r d; do
			[ -d "$d" ] || continue
			find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ -d "$d" ] && left=1
		done <"$work/cgdirs"
		((left)) || return 0
		sleep 0.05
	done
}

# sweep_stale removes the cgroups of earlier runs that were killed before
# their teardown (SIGKILL): trees named like ours, next to where ours go,
# without a process in them, whose run's work dir is gone or whose unshare
# is no longer alive. A run that is just starting has a work dir without
# unshare.pid and is left alone.
sweep_stale() {
	local mp fs opts key path name names=() d old pidfile
	while read -r mp fs opts; do
		key="$(hierarchy_key "$fs" "$opts")"
		path="$(awk -F: -v k="$key" '$2 == k {print $3; exit}' /proc/self/cgroup)"
		for d in "${mp}${path%/}"/mini-sdtest.*; do
			[ -d "$d" ] && names+=("${d##*/}")
		done
	done <"$work/hier"
	for name in $(printf '%s\n' "${names[@]}" | sort -u); do
		old="$(dirname "$work")/sdtest.${name#mini-sdtest.}"
		pidfile="$old/unshare.pid"
		if [ -d "$old" ] && { [ ! -f "$pidfile" ] || kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
			continue
		fi
		if awk -v n="/$name" '$0 ~ n' /proc/[0-9]*/cgroup 2>/dev/null | grep -q .; then
			continue
		fi
		log "removing the cgroups (and work dir) of an earlier run that was killed: $name"
		rm -rf "$old"
		while read -r mp fs opts; do
			key="$(hierarchy_key "$fs" "$opts")"
			path="$(awk -F: -v k="$key" '$2 == k {print $3; exit}' /proc/self/cgroup)"
			d="${mp}${path%/}/$name"
			[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		done <"$work/hier"
	done
	return 0
}

# leftovers prints everything the run left behind.
leftovers() {
	local d r
	# Processes the tests left: tolerated only when they were interrupted.
	if [ -n "$stray" ] && ((rc == 0)); then
		while read -r r; do echo "process left in systemd's pid namespace after the tests: $r"; done <<<"$stray"
	fi
	pidns_procs | sed 's/^/process in systemd'"'"'s pid namespace: /'
	while read -r d; do
		[ -d "$d" ] && echo "cgroup: $d"
	done <"$work/cgdirs"
	while read -r r; do
		find "$r" -type d -name "$NAME" 2>/dev/null | sed 's/^/cgroup: /'
	done < <(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts)
	[ -e "$work/canary" ] || echo "the canary file in $work is gone: was /tmp wiped?"
	snapshot "$work/after"
	diff "$work/before" "$work/after" | grep '^[<>]' | sed 's/^</gone:/; s/^>/new:/' || true
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$? left r t0=$SECONDS
	set +e
	trap - EXIT INT TERM
	if [ -n "$work" ] && [ -f "$work/before" ]; then
		stop_systemd
		remove_cgroups
		left="$(leftovers)"
		log "teardown took $((SECONDS - t0))s"
		if [ -n "$left" ]; then
			log "LEFT BEHIND after the run:"
			while read -r r; do log "  $r"; done <<<"$left"
			((rc)) || rc=1
		else
			log "nothing left behind: no process, cgroup, hierarchy, mount or /dev, /run, /etc/systemd, journal entry"
		fi
	fi
	if [ -n "$work" ]; then
		if [ "${SDTEST_KEEP:-}" = 1 ] || ((rc)); then
			log "kept $work (systemd's console: $work/console.log)"
		else
			rm -rf "$work"
		fi
	fi
	exit "$rc"
}

# Everything runs from main so that bash has read the whole script before
# it starts: editing this file during a run cannot derail it.
main() {
	[ "$(id -u)" = 0 ] || die "needs root"
	work=""
	sdpid=""
	upid=""
	pidns=""
	stray=""
	mapfile -t TEST_ARGS < <(go_test_args -v -count=1 -timeout="${TIMEOUT}s" -run Systemd "$@")

	if [ -d /run/systemd/system ]; then
		# systemd is init already: nothing to fake.
		log "systemd is this host's init: running the tests directly against it"
		tmp="$(mktemp -d)"
		trap 'rm -rf "$tmp"' EXIT
		(cd "$REPO" && go test -c -o "$tmp/integration.test" ./integration/)
		cd "$REPO/integration"
		"$tmp/integration.test" "${TEST_ARGS[@]}"
		return
	fi

	problem="$(systemd_problem)"
	[ -z "$problem" ] || skip_loudly "$problem"

	work="$(mktemp -d "${TMPDIR:-/tmp}/sdtest.XXXXXX")"
	NAME="mini-sdtest.${work##*.}"
	TEST_CMD=("$work/integration.test" "${TEST_ARGS[@]}")
	if [ -n "${SDTEST_EXEC:-}" ]; then
		TEST_CMD=(bash -c "$SDTEST_EXEC")
	fi
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	t0=$SECONDS
	if [ -n "${SDTEST_TEST_BIN:-}" ]; then
		[ -x "$SDTEST_TEST_BIN" ] || die "SDTEST_TEST_BIN=$SDTEST_TEST_BIN is not an executable"
		cp "$SDTEST_TEST_BIN" "$work/integration.test"
	else
		log "building integration.test"
		(cd "$REPO" && go test -c -o "$work/integration.test" ./integration/)
	fi
	copy_shim_binaries "$work"
	t_build=$((SECONDS - t0))

	# "mountpoint fstype superopts" of every cgroup mount we see.
	awk '{for (i = 7; i <= NF; i++) if ($i == "-") break
	      if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5, $(i+1), $(i+3)}' \
		/proc/self/mountinfo >"$work/hier"
	find /sys/fs/cgroup -maxdepth 1 -type l -printf '%f %l\n' >"$work/links"
	sweep_stale
	touch "$work/canary"
	snapshot "$work/before"
	t0=$SECONDS
	# Not in a subshell: the teardown needs the pids it finds.
	if ! boot_systemd >"$work/why"; then
		stop_systemd
		skip_loudly "systemd did not boot: $(cat "$work/why")"
	fi
	t_boot=$((SECONDS - t0))
	log "systemd $("$SYSTEMD" --version | awk 'NR==1{print $2}') is PID 1 of its namespaces (host pid $sdpid), running after ${t_boot}s; cgroup: $NAME"

	t0=$SECONDS
	rc=0
	# In the background: bash runs a trap only once the foreground command
	# ends, and a SIGTERM to this script should stop the tests (the
	# teardown ends every process in systemd's pid namespace) at once.
	run_tests &
	wait $! || rc=$?
	log "timings: build ${t_build}s, boot ${t_boot}s, tests $((SECONDS - t0))s"
	if ((rc == 0)); then
		log "systemd cgroup driver tests PASSED"
	else
		log "systemd cgroup driver tests FAILED with exit code $rc"
	fi
	exit "$rc"
}

if [ "${1:-}" = --inner ]; then
	inner "$2"
elif [ "${1:-}" = --cgns ]; then
	cgns_step "$2" "$3"
else
	main "$@"
fi
