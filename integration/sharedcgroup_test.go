package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Issue 9: containers that share one cgroupsPath (ctr's `oci spec` writes
// /default for every container). Deleting the first neither kills the
// second nor takes the cgroup from under it; the second can still be
// deleted, and the last delete removes the cgroup. A forced delete (kill
// --all) reaches only its own container. And where the cgroup is gone
// already, the second's delete still goes through.
func TestSharedCgroupsPath(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		shared := "/" + DefaultNamespace + "/shared-" + tg.d.version.Tag() + "-" + RuntimeTag(tg.runtime) + "-" + RandomSuffix()
		inShared := func(s *specs.Spec) { s.Linux.CgroupsPath = shared }
		first, second := newCase(t, tg, "shared1"), newCase(t, tg, "shared2")
		for _, tc := range []*tcase{first, second} {
			tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, inShared, "/bin/sleep", "1000"))
		}
		roots, err := CgroupRoots()
		if err != nil {
			t.Fatal(err)
		}
		left := func() []string {
			var out []string
			for _, r := range roots {
				if _, err := os.Stat(filepath.Join(r, shared)); err == nil {
					out = append(out, filepath.Join(r, shared))
				}
			}
			return out
		}
		if len(left()) == 0 {
			t.Fatalf("no shared cgroup %s", shared)
		}
		secondPid := second.waitStatus("RUNNING")
		// The first container ends (its init only: a kill of --all, as
		// `tasks delete --force` sends, would reach every process of the
		// shared cgroup) and is deleted.
		if res := first.ctr("", "tasks", "kill", "--signal", "SIGKILL", first.id); res.ExitCode != 0 {
			t.Fatalf("kill the first container: %s", res)
		}
		first.waitStatus("STOPPED")
		if res := first.ctr("", "tasks", "delete", first.id); res.ExitCode != 0 {
			t.Errorf("delete the first container's task: %s", res)
		}
		if got := second.waitStatus("RUNNING"); got != secondPid {
			t.Errorf("the second container's task changed from pid %s to %s", secondPid, got)
		}
		if res := second.exec("e1", "/bin/true"); res.ExitCode != 0 {
			t.Errorf("exec into the second container after the first was deleted: %s", res)
		}
		if len(left()) == 0 {
			t.Errorf("the first delete removed the cgroup the second container is in")
		}
		if res := second.ctr("", "tasks", "delete", "--force", second.id); res.ExitCode != 0 {
			t.Errorf("delete the second container's task: %s", res)
		}
		waitGone := func() {
			deadline := time.Now().Add(5 * time.Second)
			for len(left()) > 0 {
				if time.Now().After(deadline) {
					t.Errorf("the shared cgroup is left after both containers' deletes: %v", left())
					for _, d := range left() {
						RemoveCgroupTree(d)
					}
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		waitGone()

		// A forced delete sends kill --all: it must reach only the
		// first's processes (runc-v2 kills every process of the cgroup).
		third, fourth := newCase(t, tg, "shared3"), newCase(t, tg, "shared4")
		for _, tc := range []*tcase{third, fourth} {
			tc.startDetachedArgs(tc.specArgs([]string{"--detach"}, inShared, "/bin/sleep", "1000"))
		}
		fourthPid := fourth.waitStatus("RUNNING")
		if res := third.ctr("", "tasks", "delete", "--force", third.id); res.ExitCode != 0 {
			t.Errorf("force-delete the first container's task: %s", res)
		}
		if tg.runtime == MiniRuntime {
			if got := fourth.waitStatus("RUNNING"); got != fourthPid {
				t.Errorf("the first's forced delete reached the second: pid %s became %s", fourthPid, got)
			}
		} else {
			fourth.waitStatus("STOPPED")
		}
		if res := fourth.ctr("", "tasks", "delete", "--force", fourth.id); res.ExitCode != 0 {
			t.Errorf("delete the second container's task: %s", res)
		}
		waitGone()

		// The cgroup gone before the second's delete: the second ended by
		// itself, then the first's delete found the cgroup empty and
		// removed it.
		fifth, sixth := newCase(t, tg, "shared5"), newCase(t, tg, "shared6")
		fifth.startDetachedArgs(fifth.specArgs([]string{"--detach"}, inShared, "/bin/sleep", "1000"))
		sixth.startDetachedArgs(sixth.specArgs([]string{"--detach"}, inShared, "/bin/sleep", "1"))
		sixth.waitStatus("STOPPED")
		if res := fifth.ctr("", "tasks", "delete", "--force", fifth.id); res.ExitCode != 0 {
			t.Errorf("delete the first container's task: %s", res)
		}
		waitGone()
		if res := sixth.ctr("", "tasks", "delete", sixth.id); res.ExitCode != 0 {
			t.Errorf("delete of the second container's task after its cgroup went: %s", res)
		}
		waitGone()
	})
}
