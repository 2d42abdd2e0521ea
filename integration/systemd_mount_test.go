package integration

import (
	"strings"
	"testing"
)

// Issue 4 with systemd running: a container that mounts its cgroups (as CRI
// and Docker specs do) and has no cgroup namespace gets its own cgroup
// directories bound in while it sets up, so under the systemd driver they
// must exist by then, though systemd makes them only around the container's
// first process.
func TestSystemdCgroupMount(t *testing.T) {
	if !systemdRunning() {
		t.Skip("systemd does not run here; `make test-systemd` runs this case against a private one")
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		sc := newSystemdCase(t, tg, "sdmnt")
		flags := sc.runFlags("--rm", "--mount", "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev")
		for i := 0; i < 5; i++ {
			res := sc.ctr("", sc.runArgs(flags, "", "/bin/sh", "-c", ownMemoryLimit("/system.slice/"+sc.unit))...)
			if !strings.Contains(res.Stdout, sdMemoryLimit) {
				t.Fatalf("run %d: the container's own memory limit is not in its cgroup mount:\n%s", i, res)
			}
		}
		sc.checkGone("run --rm")
	})
}
