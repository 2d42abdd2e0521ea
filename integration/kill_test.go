package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Case 3: signals from `ctr tasks kill` reach pid 1 and the exit status
// says how it ended: 128+9 for SIGKILL; a TERM handler runs (and its exit
// code is reported); SIGTERM to a pid 1 without a handler is ignored, as
// the kernel does for any pid-namespace init.
func TestKill(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("KILL", func(t *testing.T) {
			tc := newCase(t, tg, "kill9")
			done := tc.background("", tc.runArgs([]string{"--rm"}, "", "/bin/sleep", "1000")...)
			tc.waitStatus("RUNNING")
			if res := tc.ctr("", "tasks", "kill", "--signal", "SIGKILL", tc.id); res.ExitCode != 0 {
				t.Fatalf("kill: %s", res)
			}
			if res := tc.await(done); res.ExitCode != 137 {
				t.Fatalf("want exit code 137:\n%s", res)
			}
			tc.lifecycle(137)
		})
		t.Run("TERM-trapped", func(t *testing.T) {
			tc := newCase(t, tg, "term")
			script := `trap "echo got-TERM; exit 143" TERM; /bin/sleep 1000 & wait`
			done := tc.background("", tc.runArgs([]string{"--rm"}, "", "/bin/sh", "-c", script)...)
			tc.waitStatus("RUNNING")
			// Two pids means sleep was forked, so the trap is already set.
			tc.waitPids(2)
			if res := tc.ctr("", "tasks", "kill", "--signal", "SIGTERM", tc.id); res.ExitCode != 0 {
				t.Fatalf("kill: %s", res)
			}
			res := tc.await(done)
			if res.ExitCode != 143 || res.Stdout != "got-TERM\n" {
				t.Fatalf("want stdout got-TERM and exit code 143:\n%s", res)
			}
			tc.lifecycle(143)
		})
		t.Run("TERM-ignored", func(t *testing.T) {
			tc := newCase(t, tg, "termign")
			done := tc.background("", tc.runArgs([]string{"--rm"}, "", "/bin/sleep", "1000")...)
			pid := tc.waitStatus("RUNNING")
			if res := tc.ctr("", "tasks", "kill", "--signal", "SIGTERM", tc.id); res.ExitCode != 0 {
				t.Fatalf("kill: %s", res)
			}
			time.Sleep(time.Second)
			if got := tc.waitStatus("RUNNING"); got != pid {
				t.Fatalf("pid changed from %s to %s", pid, got)
			}
			if res := tc.ctr("", "tasks", "kill", "--signal", "SIGKILL", tc.id); res.ExitCode != 0 {
				t.Fatalf("kill: %s", res)
			}
			if res := tc.await(done); res.ExitCode != 137 {
				t.Fatalf("want exit code 137:\n%s", res)
			}
			tc.lifecycle(137)
		})
	})
}

// Issue 4: `kill --all` signals every process in the container's cgroup,
// not just pid 1: a TERM that pid 1 (without a handler) ignores still ends
// its children, whose end lets pid 1's wait return. And when init shares
// the host's pid namespace, what it leaves behind is killed when it exits,
// as with runc: nothing of the container outlives its init.
func TestKillAll(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("TERM-all", func(t *testing.T) {
			tc := newCase(t, tg, "killall")
			done := tc.background("", tc.runArgs([]string{"--rm"}, "", "/bin/sh", "-c", "/bin/sleep 1000 & /bin/sleep 1000 & wait; echo waited")...)
			tc.waitStatus("RUNNING")
			tc.waitPids(3)
			if res := tc.ctr("", "tasks", "kill", "--all", "--signal", "SIGTERM", tc.id); res.ExitCode != 0 {
				t.Fatalf("kill --all: %s", res)
			}
			res := tc.await(done)
			if res.ExitCode != 0 || res.Stdout != "waited\n" {
				t.Fatalf("want the sleepers killed, wait returned and exit 0:\n%s", res)
			}
			tc.lifecycle(0)
		})
		t.Run("host-pid-namespace", func(t *testing.T) {
			tc := newCase(t, tg, "killhostpid")
			// The suite's own pid namespace is the host's (pid 1's may not be
			// open to us in a sandbox).
			flags := []string{"--rm", "--with-ns", fmt.Sprintf("pid:/proc/%d/ns/pid", os.Getpid())}
			res := tc.ctr("", tc.runArgs(flags, "", "/bin/sh", "-c", "/bin/sleep 1000 & echo $!")...)
			if res.ExitCode != 0 {
				t.Fatalf("run: %s", res)
			}
			// The sleeper's pid is a host pid here: it must be gone.
			pid := strings.TrimSpace(res.Stdout)
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, err := os.Stat("/proc/" + pid); err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pid %s outlived its container's init", pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	})
}

// waitPids polls `ctr tasks ps` until the container has at least n
// processes and returns their pids.
func (tc *tcase) waitPids(n int) []string {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last Result
	for time.Now().Before(deadline) && tc.ctx.Err() == nil {
		tc.checkBackground("it had the processes it starts")
		last = tc.ctr("", "tasks", "ps", tc.id)
		if pids := psPids(last.Stdout); last.ExitCode == 0 && len(pids) >= n {
			return pids
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.t.Fatalf("task %s never had %d processes:\n%s", tc.id, n, last)
	return nil
}

// psPids reads the PID column of `ctr tasks ps`.
func psPids(out string) []string {
	var pids []string
	for _, row := range parsePs(out) {
		pids = append(pids, row.Pid)
	}
	return pids
}
