package integration

import (
	"os"
	"strings"
	"testing"
)

// systemdRunning says whether systemd is this host's init, as sd_booted(3)
// tells.
func systemdRunning() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// Issue 4: a "slice:prefix:name" cgroupsPath asks for the systemd cgroup
// driver. Where systemd does not run, the create fails at once with an
// error that says so (not a hang on D-Bus), and leaves nothing behind.
// runc-v2 takes the driver from its options only, so it is given
// --runc-systemd-cgroup (which ctr passes to runc shims alone).
func TestSystemdCgroupDriverWithoutSystemd(t *testing.T) {
	if systemdRunning() {
		t.Skip("systemd runs on this host; this case is about hosts without it")
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "sdcg")
		flags := []string{"--rm", "--cgroup", "system.slice:minitest:" + tc.id}
		if strings.Contains(tg.runtime, "runc") {
			flags = append(flags, "--runc-systemd-cgroup")
		}
		var want []string
		if !strings.Contains(tg.runtime, "runc") {
			want = []string{"systemd", "not running", "cgroupfs driver"}
		}
		tc.ctrFails(tc.runArgs(flags, "", "/bin/true"), want...)
	})
}

// Issue 4, bad input: a cgroupsPath that climbs out of its parent is
// refused before anything is made. (runc cleans such a path into the
// cgroup root and goes on, so only our runtime is held to the error.)
func TestCgroupsPathEscape(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if strings.Contains(tg.runtime, "runc") {
			t.Skip("runc accepts the path, cleaned")
		}
		tc := newCase(t, tg, "cgesc")
		tc.ctrFails(tc.runArgs([]string{"--rm", "--cgroup", "/minitest/../../" + tc.id}, "", "/bin/true"),
			"cgroupsPath", "escapes its parent", "invalid argument")
	})
}

// Issue 4: under the cgroupfs driver init and execs are in the container's
// cgroup in every hierarchy the host has, the unified one of a hybrid host
// included (as with runc: systemd tracks processes there).
func TestCgroupfsPlacement(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "cgplace")
		want := tc.c.CgroupsPath(tc.id)
		done := tc.background("", tc.runArgs([]string{"--rm"}, "", "/bin/sleep", "1000")...)
		tc.waitStatus("RUNNING")
		if res := tc.ctr("", "tasks", "exec", "--detach", "--exec-id", "cg", tc.id, "/bin/sleep", "1000"); res.ExitCode != 0 {
			t.Fatalf("exec: %s", res)
		}
		// Read from the host, which sees every hierarchy from its root:
		// init and the exec.
		for _, pid := range tc.waitPids(2) {
			data, err := os.ReadFile("/proc/" + pid + "/cgroup")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Fields(string(data)) {
				if !strings.HasSuffix(l, ":"+want) {
					t.Errorf("pid %s: %q is not in %s; all lines:\n%s", pid, l, want, data)
				}
			}
		}
		if res := tc.ctr("", "tasks", "kill", "--all", "-s", "KILL", tc.id); res.ExitCode != 0 {
			t.Fatalf("kill: %s", res)
		}
		tc.await(done)
	})
}

// ownMemoryLimit prints the container's memory limit from its cgroup
// mount: v1 binds the container's own cgroup of each hierarchy; v2 mounts
// the whole tree (as runc does), where the container's is at its path.
func ownMemoryLimit(cgroupsPath string) string {
	return `cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup` + cgroupsPath + `/memory.max`
}

// Issue 4: a container without a cgroup namespace that mounts its cgroups
// (as CRI and Docker specs do) finds its own limits there.
func TestCgroupMountWithoutNamespace(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "cgmount")
		flags := []string{"--rm", "--memory-limit", "67108864", "--mount", "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev"}
		res := tc.ctr("", tc.runArgs(flags, "", "/bin/sh", "-c", ownMemoryLimit(tc.c.CgroupsPath(tc.id)))...)
		if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != "67108864" {
			t.Fatalf("want the container's own memory limit 67108864 in its cgroup mount:\n%s", res)
		}
	})
}
