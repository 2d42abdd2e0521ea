package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hookRecorder writes a hook script into a host dir that the container
// also gets at /tmp/hooks, so the same script serves hooks that run on the
// host and in the container. Each run appends a line to the dir's log:
// the hook's name and arg, its mount and pid namespaces and env, then the
// state it read on stdin.
func hookRecorder(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	script := `#!/bin/sh
log="$(dirname "$0")/log"
line="$1 arg=$2 mnt=$(readlink /proc/self/ns/mnt) pidns=$(readlink /proc/self/ns/pid) env=$HOOKENV state="
state="$(cat)"
echo "$line$state" >> "$log"
case "$1" in fail-*) echo "hook $1 says no" >&2; exit 7 ;; sleep-*) exec sleep 300 ;; esac
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "record"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hookRecord is one line of the recorder's log.
type hookRecord struct {
	name, arg, mnt, pidns, env string
	state                      specs.State
}

func readHookLog(t *testing.T, dir string) []hookRecord {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []hookRecord
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		head, state, _ := strings.Cut(line, " state=")
		f := strings.Fields(head)
		r := hookRecord{name: f[0]}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "arg":
				r.arg = v
			case "mnt":
				r.mnt = v
			case "pidns":
				r.pidns = v
			case "env":
				r.env = v
			}
		}
		if err := json.Unmarshal([]byte(state), &r.state); err != nil {
			t.Errorf("hook %s read no state on stdin: %q", r.name, state)
		}
		out = append(out, r)
	}
	return out
}

func hookNames(recs []hookRecord) string {
	var names []string
	for _, r := range recs {
		names = append(names, r.name)
	}
	return strings.Join(names, " ")
}

// withHooks gives the spec the recorder's hooks (name → kind) and the
// /tmp/hooks bind mount (on specArgs' tmpfs, so the shared rootfs gets no
// mount point).
func withHooks(dir string, kinds map[string]string, timeout *int) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp/hooks", Type: "bind", Source: dir, Options: []string{"rbind", "rw"}})
		h := &specs.Hooks{}
		for name, kind := range kinds {
			path := filepath.Join(dir, "record")
			if kind == "startContainer" {
				// Resolved in the container, after pivot_root.
				path = "/tmp/hooks/record"
			}
			hook := specs.Hook{Path: path, Args: []string{"record", name, "a1"}, Env: []string{"PATH=/usr/bin:/bin", "HOOKENV=" + name}, Timeout: timeout}
			switch kind {
			case "prestart":
				h.Prestart = append(h.Prestart, hook)
			case "createRuntime":
				h.CreateRuntime = append(h.CreateRuntime, hook)
			case "createContainer":
				h.CreateContainer = append(h.CreateContainer, hook)
			case "startContainer":
				h.StartContainer = append(h.StartContainer, hook)
			case "poststart":
				h.Poststart = append(h.Poststart, hook)
			case "poststop":
				h.Poststop = append(h.Poststop, hook)
			}
		}
		s.Hooks = h
	}
}

// Issue 8, hooks: every kind runs at its moment, in the namespaces the
// runtime spec gives, with the container state on stdin, its args and env;
// a failing or overrunning hook fails its step and leaves nothing behind; a
// failing poststop is logged and the delete goes on.
func TestHooks(t *testing.T) {
	hostMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	hostPidns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{
		"prestart": "prestart", "createRuntime": "createRuntime", "createContainer": "createContainer",
		"startContainer": "startContainer", "poststart": "poststart", "poststop": "poststop",
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		t.Run("every-kind", func(t *testing.T) {
			tc := newCase(t, tg, "hooks")
			dir := hookRecorder(t)
			args := tc.specArgs([]string{"--rm"}, withHooks(dir, all, nil), "/bin/sh", "-c", "echo main-ran; readlink /proc/self/ns/mnt")
			res := tc.ctr("", args...)
			if res.ExitCode != 0 || !strings.HasPrefix(res.Stdout, "main-ran\n") {
				t.Fatalf("run with every kind of hook:\n%s", res)
			}
			containerMnt := strings.TrimSpace(strings.TrimPrefix(res.Stdout, "main-ran\n"))
			recs := waitHookLog(t, dir, 6)
			want := "prestart createRuntime createContainer startContainer poststart poststop"
			if tg.runtime == RuncRuntime {
				// Released runc runs poststart during create, before the
				// process is started (fixed in runc's main branch).
				want = "prestart createRuntime createContainer poststart startContainer poststop"
			}
			if got := hookNames(recs); got != want {
				t.Fatalf("hooks ran as %q, want %q", got, want)
			}
			var initPid int
			for _, r := range recs {
				where, status := hostMnt, specs.StateCreating
				switch r.name {
				case "createContainer", "startContainer":
					where = containerMnt
				}
				switch r.name {
				case "startContainer":
					status = specs.StateCreated
				case "poststart":
					status = specs.StateRunning
					if tg.runtime == RuncRuntime {
						status = specs.StateCreated
					}
				case "poststop":
					status = specs.StateStopped
				}
				if r.mnt != where {
					t.Errorf("hook %s ran in mount namespace %s, want %s (host %s, container %s)", r.name, r.mnt, where, hostMnt, containerMnt)
				}
				if r.state.ID != tc.id || r.state.Status != status || r.state.Bundle == "" || r.state.Version == "" {
					t.Errorf("hook %s got state %+v, want id %s, status %s and the bundle", r.name, r.state, tc.id, status)
				}
				if r.arg != "a1" || r.env != r.name {
					t.Errorf("hook %s got arg %q and HOOKENV %q, want a1 and its name", r.name, r.arg, r.env)
				}
				switch r.name {
				case "prestart", "createRuntime", "poststart":
					// The host's view of init's pid.
					if r.pidns != hostPidns || r.state.Pid <= 1 {
						t.Errorf("hook %s: pid namespace %s (host %s), state pid %d; want the host's and init's host pid", r.name, r.pidns, hostPidns, r.state.Pid)
					}
					if initPid == 0 {
						initPid = r.state.Pid
					} else if r.state.Pid != initPid {
						t.Errorf("hook %s got pid %d, an earlier hook %d", r.name, r.state.Pid, initPid)
					}
				case "createContainer", "startContainer":
					// In the container's pid namespace, which calls init 1.
					if r.pidns == hostPidns || r.state.Pid != 1 {
						t.Errorf("hook %s: pid namespace %s (host %s), state pid %d; want the container's and 1", r.name, r.pidns, hostPidns, r.state.Pid)
					}
				case "poststop":
					if r.state.Pid != 0 {
						t.Errorf("poststop got pid %d, want none", r.state.Pid)
					}
				}
			}
		})
		failures := []struct {
			name, kind string
			timeout    *int
			want       []string
		}{
			{"prestart-fails", "prestart", nil, []string{"prestart", "hook fail-prestart says no"}},
			{"create-runtime-fails", "createRuntime", nil, []string{"createRuntime", "hook fail-createRuntime says no"}},
			{"create-container-fails", "createContainer", nil, []string{"createContainer", "hook fail-createContainer says no"}},
			{"create-runtime-timeout", "createRuntime", ptrInt(1), []string{"createRuntime", "timeout"}},
		}
		for _, f := range failures {
			t.Run(f.name, func(t *testing.T) {
				tc := newCase(t, tg, f.name)
				dir := hookRecorder(t)
				name := "fail-" + f.kind
				if f.timeout != nil {
					name = "sleep-" + f.kind
				}
				args := tc.specArgs([]string{"--rm"}, withHooks(dir, map[string]string{name: f.kind, "poststop": "poststop"}, f.timeout), "/bin/sh", "-c", "echo main-ran")
				want := f.want
				if tg.runtime != MiniRuntime {
					// runc names no hook kind, only its index.
					want = want[1:]
				}
				start := time.Now()
				res := tc.ctrFails(args, want...)
				if strings.Contains(res.Stdout, "main-ran") {
					t.Errorf("the container's process ran although a %s hook failed", f.kind)
				}
				// The hook sleeps 300 s: killed at its timeout, it holds
				// create up only that long (generous: under emulation a
				// create alone takes seconds).
				if f.timeout != nil && time.Since(start) > time.Minute {
					t.Errorf("a hook with a timeout of 1s held create for %v", time.Since(start))
				}
				// As runc: the failed create's cleanup runs poststop.
				if got := hookNames(waitHookLog(t, dir, 2)); got != name+" poststop" {
					t.Errorf("hooks ran as %q, want %q", got, name+" poststop")
				}
			})
		}
		t.Run("poststop-fails", func(t *testing.T) {
			tc := newCase(t, tg, "poststop-fails")
			dir := hookRecorder(t)
			args := tc.specArgs([]string{"--detach"}, withHooks(dir, map[string]string{"fail-poststop": "poststop"}, nil), "/bin/sleep", "1000")
			if res := tc.ctr("", args...); res.ExitCode != 0 {
				t.Fatalf("run: %s", res)
			}
			tc.waitStatus("RUNNING")
			res := tc.ctr("", "tasks", "delete", "--force", tc.id)
			if tg.runtime == MiniRuntime && res.ExitCode != 0 {
				// runc fails the delete; the runtime spec says to log and
				// go on, and this runtime does.
				t.Errorf("delete with a failing poststop hook: %s", res)
			}
			t.Logf("%s on containerd %s: task delete with a failing poststop hook: exit %d %s", tg.runtime, tg.d.version.Name, res.ExitCode, strings.TrimSpace(res.Stderr))
			if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
				t.Errorf("containers delete: %s", res)
			}
			if got := hookNames(waitHookLog(t, dir, 1)); got != "fail-poststop" {
				t.Errorf("hooks ran as %q", got)
			}
		})
		t.Run("poststop-after-shim-crash", func(t *testing.T) {
			// containerd's cleanup of a dead shim (`shim delete`) runs the
			// poststop hooks too, as runc-v2's `runc delete --force` does.
			tc := newCase(t, tg, "poststop-crash")
			dir := hookRecorder(t)
			args := tc.specArgs([]string{"--detach"}, withHooks(dir, map[string]string{"poststop": "poststop"}, nil), "/bin/sleep", "1000")
			if res := tc.ctr("", args...); res.ExitCode != 0 {
				t.Fatalf("run: %s", res)
			}
			tc.waitStatus("RUNNING")
			if err := syscall.Kill(tc.shimPid(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			tc.waitTaskGone()
			recs := waitHookLog(t, dir, 1)
			if hookNames(recs) != "poststop" || recs[0].state.Status != specs.StateStopped || recs[0].state.ID != tc.id {
				t.Errorf("after the crash the hooks ran as %q with %+v, want poststop once, status stopped", hookNames(recs), recs)
			}
			if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
				t.Errorf("containers delete: %s", res)
			}
			if tg.runtime == RuncRuntime {
				for _, s := range tc.c.ShimSocketPaths(tc.id) {
					_ = os.Remove(s)
				}
			}
		})
		if tg.runtime == MiniRuntime {
			t.Run("start-container-fails", func(t *testing.T) {
				// runc's start succeeds and the container exits 255; this
				// runtime fails Start with the hook's error, as the runtime
				// spec asks, and the process never runs.
				tc := newCase(t, tg, "start-fails")
				dir := hookRecorder(t)
				args := tc.specArgs([]string{"--rm"}, withHooks(dir, map[string]string{"fail-startContainer": "startContainer"}, nil), "/bin/sh", "-c", "echo main-ran")
				res := tc.ctrFails(args, "startContainer", "hook fail-startContainer says no")
				// ctr deletes the task it could not start: it must be
				// stopped by the time Start answers.
				if strings.Contains(res.Stdout, "main-ran") {
					t.Error("the process ran although a startContainer hook failed")
				}
			})
			t.Run("poststart-fails", func(t *testing.T) {
				tc := newCase(t, tg, "poststart-fails")
				dir := hookRecorder(t)
				args := tc.specArgs([]string{"--rm"}, withHooks(dir, map[string]string{"fail-poststart": "poststart"}, nil), "/bin/sleep", "1000")
				tc.ctrFails(args, "poststart", "hook fail-poststart says no", "killed")
			})
		}
	})
}

func ptrInt(v int) *int { return &v }

// waitHookLog waits until the log has n lines (poststop runs after ctr
// returned) and a moment more, so that an extra line would show.
func waitHookLog(t *testing.T, dir string, n int) []hookRecord {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if recs := readHookLog(t, dir); len(recs) >= n {
			time.Sleep(200 * time.Millisecond)
			return readHookLog(t, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	recs := readHookLog(t, dir)
	t.Errorf("hook log has %d lines (%s), want %d", len(recs), hookNames(recs), n)
	return recs
}
