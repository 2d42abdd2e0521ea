package integration

import (
	"strings"
	"testing"
)

// Case 7: bad input fails `ctr run` with a message that names the cause,
// and leaves nothing behind (the leak check of every case).
func TestBadInput(t *testing.T) {
	cases := []struct {
		name  string
		flags []string
		// rootfs replaces the shared rootfs when set.
		rootfs string
		cmd    []string
		// want are the words the error must contain, whatever the runtime.
		want []string
	}{
		{
			name: "missing-binary",
			cmd:  []string{"/bin/nope"},
			want: []string{"/bin/nope", "no such file or directory"},
		},
		{
			name: "empty-args",
			want: []string{"args", "empty"},
		},
		{
			name:  "missing-bind-source",
			flags: []string{"--mount", "type=bind,src=/nonexistent-mini-src,dst=/x,options=rbind:ro"},
			cmd:   []string{"/bin/true"},
			want:  []string{"/nonexistent-mini-src", "no such file or directory"},
		},
		{
			name:   "missing-rootfs",
			rootfs: "/nonexistent-mini-rootfs",
			cmd:    []string{"/bin/true"},
			want:   []string{"/nonexistent-mini-rootfs", "no such file or directory"},
		},
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, c.name)
				args := tc.runArgs(append([]string{"--rm"}, c.flags...), "", c.cmd...)
				if c.rootfs != "" {
					for i, a := range args {
						if a == suite.Rootfs {
							args[i] = c.rootfs
						}
					}
				}
				tc.ctrFails(args, c.want...)
			})
		}
		t.Run("duplicate-id", func(t *testing.T) {
			tc := newCase(t, tg, "dup")
			args := tc.runArgs([]string{"--detach"}, "", "/bin/sleep", "1000")
			if res := tc.ctr("", args...); res.ExitCode != 0 {
				t.Fatalf("first run: %s", res)
			}
			pid := tc.waitStatus("RUNNING")
			res := tc.ctr("", args...)
			if res.ExitCode == 0 || !strings.Contains(res.Stderr, "already exists") || !strings.Contains(res.Stderr, tc.id) {
				t.Errorf("second run with the same id should fail with %q naming the id:\n%s", "already exists", res)
			}
			t.Logf("%s on containerd %s says: %s", tg.runtime, tg.d.version.Name, strings.TrimSpace(res.Stderr))
			if got := tc.waitStatus("RUNNING"); got != pid {
				t.Errorf("first task disturbed: pid %s became %s", pid, got)
			}
			if res := tc.ctr("", "tasks", "delete", "--force", tc.id); res.ExitCode != 0 {
				t.Errorf("tasks delete --force: %s", res)
			}
			if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
				t.Errorf("containers delete: %s", res)
			}
		})
	})
}
