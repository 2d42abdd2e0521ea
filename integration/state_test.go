package integration

import (
	"slices"
	"strings"
	"testing"
)

// Case 5: a detached task is listed as RUNNING with its pid, `ctr tasks ps`
// shows that pid, and `tasks delete --force` kills and removes it; a task
// that exited on its own is STOPPED until deleted.
func TestTaskState(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("running", func(t *testing.T) {
			tc := newCase(t, tg, "running")
			if res := tc.ctr("", tc.runArgs([]string{"--detach"}, "", "/bin/sleep", "1000")...); res.ExitCode != 0 {
				t.Fatalf("run --detach: %s", res)
			}
			pid := tc.waitStatus("RUNNING")
			ps := tc.ctr("", "tasks", "ps", tc.id)
			if ps.ExitCode != 0 || !slices.Contains(psPids(ps.Stdout), pid) {
				t.Errorf("tasks ps should list pid %s:\n%s", pid, ps)
			}
			if res := tc.ctr("", "tasks", "delete", "--force", tc.id); res.ExitCode != 0 {
				t.Errorf("tasks delete --force: %s", res)
			}
			if res := tc.ctr("", "tasks", "list"); strings.Contains(res.Stdout, tc.id) {
				t.Errorf("task still listed after delete:\n%s", res)
			}
			if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
				t.Errorf("containers delete: %s", res)
			}
			tc.lifecycle(137)
		})
		t.Run("stopped", func(t *testing.T) {
			tc := newCase(t, tg, "stopped")
			if res := tc.ctr("", tc.runArgs([]string{"--detach"}, "", "/bin/true")...); res.ExitCode != 0 {
				t.Fatalf("run --detach: %s", res)
			}
			tc.waitStatus("STOPPED")
			if res := tc.ctr("", "tasks", "delete", tc.id); res.ExitCode != 0 {
				t.Errorf("tasks delete: %s", res)
			}
			if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
				t.Errorf("containers delete: %s", res)
			}
			tc.lifecycle(0)
		})
	})
}
