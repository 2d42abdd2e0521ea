package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// sub is the case as seen from subtest t: same container, but failures
// go to t.
func (tc *tcase) sub(t *testing.T) *tcase {
	c := *tc
	c.t, c.bg = t, nil
	return &c
}

// startDetached runs cmd in the case's container with `ctr run --detach`,
// waits until the task runs and returns init's pid (as waitStatus). The
// cleanup it registers runs before the leak check of newCase and removes
// task and container the way a user would, so the leak check sees what an
// orderly removal leaves.
func (tc *tcase) startDetached(cmd ...string) string {
	tc.t.Helper()
	return tc.startDetachedArgs(tc.runArgs([]string{"--detach"}, "", cmd...))
}

// startDetachedArgs is startDetached with the whole `ctr run --detach`
// argument list given.
func (tc *tcase) startDetachedArgs(args []string) string {
	tc.t.Helper()
	if res := tc.ctr("", args...); res.ExitCode != 0 {
		tc.t.Fatalf("run --detach: %s", res)
	}
	tc.t.Cleanup(tc.removeDetached)
	return tc.waitStatus("RUNNING")
}

// removeDetached force-deletes the task (it kills a running one) and then
// deletes the container; a task that is already gone is fine.
func (tc *tcase) removeDetached() {
	if res := tc.ctr("", "tasks", "delete", "--force", tc.id); res.ExitCode != 0 && !strings.Contains(res.Stderr, "not found") {
		tc.t.Errorf("delete task: %s", res)
	}
	if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
		tc.t.Errorf("delete container: %s", res)
	}
}

// killAndDelete SIGKILLs the case's task, waits until it stopped, and
// deletes task and container, failing the case at the first step that
// does not work.
func (tc *tcase) killAndDelete() {
	tc.t.Helper()
	if res := tc.ctr("", "tasks", "kill", "--signal", "SIGKILL", tc.id); res.ExitCode != 0 {
		tc.t.Fatalf("kill: %s", res)
	}
	tc.waitStatus("STOPPED")
	if res := tc.ctr("", "tasks", "delete", tc.id); res.ExitCode != 0 {
		tc.t.Fatalf("delete task: %s", res)
	}
	if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
		tc.t.Fatalf("delete container: %s", res)
	}
}

// execArgs builds `ctr tasks exec` arguments for the case's container.
func (tc *tcase) execArgs(flags []string, execID string, cmd ...string) []string {
	args := append([]string{"tasks", "exec"}, flags...)
	args = append(args, "--exec-id", execID, tc.id)
	return append(args, cmd...)
}

// exec runs `ctr tasks exec --exec-id execID ID cmd...`.
func (tc *tcase) exec(execID string, cmd ...string) Result {
	return tc.ctr("", tc.execArgs(nil, execID, cmd...)...)
}

// ctrReader is ctr with stdin read from r, so a test decides when ctr
// sees EOF.
func (tc *tcase) ctrReader(r io.Reader, args ...string) Result {
	ctx, cancel := context.WithTimeout(tc.ctx, time.Minute)
	defer cancel()
	return tc.c.Ctr(ctx, r, args...)
}

// execEventID is the exec id a task event is about: exec-added and
// exec-started carry exec_id, exit carries id (the container id for init).
func execEventID(e Event) string {
	if s, ok := e.Payload["exec_id"].(string); ok {
		return s
	}
	s, _ := e.Payload["id"].(string)
	return s
}

// execEvents returns the task events of the case's container about exec
// execID, in order.
func (tc *tcase) execEvents(execID string) []Event {
	return tc.tg.d.events.Events(func(e Event) bool {
		return e.Namespace == tc.c.Namespace && e.ContainerID() == tc.id &&
			strings.HasPrefix(e.Topic, "/tasks/") && execEventID(e) == execID
	})
}

// waitExecEvent waits up to wait for an event with topic about exec
// execID and returns it.
func (tc *tcase) waitExecEvent(execID, topic string, wait time.Duration) (Event, bool) {
	ctx, cancel := context.WithTimeout(tc.ctx, wait)
	defer cancel()
	var found Event
	_, err := tc.tg.d.events.WaitFor(ctx, func([]Event) bool {
		for _, e := range tc.execEvents(execID) {
			if e.Topic == topic {
				found = e
				return true
			}
		}
		return false
	})
	return found, err == nil
}

// shimPid is the pid of the shim serving the case's container.
func (tc *tcase) shimPid() int {
	tc.t.Helper()
	p, ok := tc.c.ShimProcess(tc.tg.runtime, tc.id)
	if !ok {
		tc.t.Fatalf("no %s process serving %s", ShimBinaryName(tc.tg.runtime), tc.id)
	}
	return p.Pid
}

// fdCount is how many file descriptors pid has open.
func fdCount(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("count fds of pid %d: %w", pid, err)
	}
	return len(entries), nil
}

// psLine is one row of `ctr tasks ps`: the pid and the INFO column, which
// names the exec id of exec processes ("&ProcessDetails{ExecID:e1,...}"
// from ctr 1.6, `exec_id:"e1"` from 2.x) and is "-" for init.
type psLine struct {
	Pid  string
	Info string
}

func parsePs(out string) []psLine {
	var rows []psLine
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue
		}
		rows = append(rows, psLine{Pid: f[0], Info: strings.Join(f[1:], " ")})
	}
	return rows
}

// execPsPid polls `ctr tasks ps` until a process of exec execID shows up
// and returns its pid.
func (tc *tcase) execPsPid(execID string) string {
	tc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last Result
	for time.Now().Before(deadline) && tc.ctx.Err() == nil {
		tc.checkBackground("exec " + execID + " showed up in ps")
		last = tc.ctr("", "tasks", "ps", tc.id)
		for _, row := range parsePs(last.Stdout) {
			if strings.Contains(row.Info, execID) {
				return row.Pid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.t.Fatalf("exec %s never showed up in ps:\n%s", execID, last)
	return ""
}
