package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Case 17: the shim of a running container with an exec dies (SIGKILL). containerd
// notices its connection drop and runs the shim binary's `delete`, which
// must kill the container and remove its cgroup and mounts; the task is
// then gone (not left RUNNING), published as exited with 137 and deleted,
// and the container record can be removed. The leak check of the case
// checks the rest.
func TestShimCrash(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "crash")
		if res := tc.ctr("", tc.runArgs([]string{"--detach"}, "", "/bin/sleep", "1000")...); res.ExitCode != 0 {
			t.Fatalf("run --detach: %s", res)
		}
		tc.waitStatus("RUNNING")
		// An exec too, whose ctr loses its shim with the crash.
		execDone := tc.background("", tc.execArgs(nil, "ecrash", "/bin/sleep", "1000")...)
		tc.execPsPid("ecrash")
		shim := tc.shimPid()
		if tg.runtime == MiniRuntime {
			// runc-v2 keeps no shim.pid in the bundle; ours does.
			data, err := os.ReadFile(filepath.Join(tc.c.TaskDir(tc.id), "shim.pid"))
			if got, _ := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || got != shim {
				t.Errorf("bundle's shim.pid: got %q (%v), want %d", data, err, shim)
			}
		}
		if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
			t.Fatalf("kill shim %d: %v", shim, err)
		}
		tc.waitTaskGone()
		if res := tc.await(execDone); res.ExitCode == 0 {
			t.Errorf("ctr exec should fail when the shim dies:\n%s", res)
		}
		res := tc.ctr("", "tasks", "delete", tc.id)
		if res.ExitCode != 0 && !strings.Contains(res.Stderr, "not found") {
			t.Errorf("task delete after the crash should succeed or find nothing:\n%s", res)
		}
		if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
			t.Errorf("container delete after the crash: %s", res)
		}
		tc.initLifecycleAfterCrash()
		if tg.runtime == RuncRuntime {
			// runc-v2's delete leaves the dead shim's sockets; ours removes
			// them, and the leak check holds it to that.
			for _, s := range tc.c.ShimSocketPaths(tc.id) {
				if err := os.Remove(s); err == nil {
					t.Logf("removed socket %s that %s left after its crash", s, tg.runtime)
				}
			}
		}
	})
}

// initLifecycleAfterCrash checks the task events of init: create, start,
// then exit with 137 and delete, which containerd publishes itself after
// the shim's `delete`; the exec's events are left out.
func (tc *tcase) initLifecycleAfterCrash() {
	t := tc.t
	ctx, cancel := context.WithTimeout(tc.ctx, 10*time.Second)
	defer cancel()
	_, err := tc.tg.d.events.WaitTopics(ctx, tc.c.Namespace, tc.id, "/tasks/delete")
	time.Sleep(200 * time.Millisecond)
	evs := tc.tg.d.events.Events(func(e Event) bool {
		return e.Namespace == tc.c.Namespace && e.ContainerID() == tc.id && strings.HasPrefix(e.Topic, "/tasks/") &&
			!strings.HasPrefix(e.Topic, "/tasks/exec-")
	})
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	if got := Topics(evs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("task events of %s: got %v (wait: %v), want %v\n%s", tc.id, got, err, want, rawEvents(evs))
	}
	if exit := evs[2]; exit.ExitStatus() != 137 || exit.Payload["id"] != tc.id {
		t.Errorf("/tasks/exit: want exit_status 137 for init %s:\n%s", tc.id, exit.Raw)
	}
}

// waitTaskGone polls `ctr tasks list` until the case's task is no longer
// listed.
func (tc *tcase) waitTaskGone() {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last Result
	for time.Now().Before(deadline) {
		last = tc.ctr("", "tasks", "list")
		listed := false
		for _, line := range strings.Split(last.Stdout, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == tc.id {
				listed = true
			}
		}
		if last.ExitCode == 0 && !listed {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tc.t.Fatalf("task %s still listed 20s after its shim was killed:\n%s", tc.id, last)
}

// Issue 9: the shim SIGKILLed in the middle of a Create (held there by a
// createRuntime hook that sleeps, after init and its cgroup exist):
// containerd's cleanup (`shim delete`) leaves no process, mount, cgroup,
// socket or bundle (the leak check of the case). runc-v2 leaves the
// container's cgroups in every hierarchy here (runc's state was not saved
// yet, so `runc delete --force` knows nothing of them): checked, and left
// out.
func TestShimCrashDuringCreate(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("runc-v2 leaves the container's cgroups after a crash in create")
		}
		tc := newCase(t, tg, "crashcreate")
		dir := t.TempDir()
		marker := filepath.Join(dir, "in-hook")
		hook := filepath.Join(dir, "hook")
		// The hook says it runs, then holds Create; exec'd so that the
		// crash's cleanup finds no shell of ours left to wait for.
		if err := os.WriteFile(hook, []byte("#!/bin/sh\ncat > /dev/null\ntouch "+marker+"\nexec sleep 30\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		done := tc.background("", tc.specArgs([]string{"--rm"}, func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: hook, Env: []string{"PATH=/usr/bin:/bin"}}}}
		}, "/bin/true")...)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(marker); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the createRuntime hook never ran")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := syscall.Kill(tc.shimPid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if res := tc.await(done); res.ExitCode == 0 {
			t.Errorf("ctr run succeeded although its shim died in Create:\n%s", res)
		}
		// The hook, orphaned by the crash, is not the container's; end it
		// so the test leaves nothing either.
		for _, p := range ProcessesMatching(func(p Proc) bool { return p.HasArg("30") && p.Name() == "sleep" && len(p.Argv) == 2 }) {
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
		if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 && !strings.Contains(res.Stderr, "not found") {
			t.Errorf("container delete after the crash: %s", res)
		}
	})
}
