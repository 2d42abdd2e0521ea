package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Issue 12, the shared shim: one shim for every container of a namespace
// (asked by annotation) or of the node (asked by the runtime options'
// ShimGroup, which `ctr run --runtime-config-path` sends as CRI's generic
// options do). Containers of the group keep running and take execs as
// others of it are deleted, one id may live in two namespaces of one node
// shim, each namespace's events carry its own name, and the shim goes when
// its last container does. runc-v2 has no such modes: ours alone.
func TestSharedShim(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("a grouping of this runtime's own")
		}
		t.Run("namespace", func(t *testing.T) {
			checkGroupSocketGoneAtEnd(t, tg.d.c, tg.d.c.Namespace, "mini:namespace")
			cases := groupedCases(t, tg, 3, "nsgrp", namespaceGroup, nil)
			shim := servingShim(t, cases...)
			// The shim carries the first container's id; that task goes
			// first, and the others stay served.
			if res := cases[0].ctr("", "tasks", "delete", "--force", cases[0].id); res.ExitCode != 0 {
				t.Fatalf("delete the first task: %s", res)
			}
			for _, tc := range cases[1:] {
				if res := tc.exec("e1", "/bin/sh", "-c", "echo in-"+tc.id); res.ExitCode != 0 || !strings.Contains(res.Stdout, "in-"+tc.id) {
					t.Errorf("exec into %s after the first container went: %s", tc.id, res)
				}
			}
			if syscall.Kill(shim, 0) != nil {
				t.Fatalf("shim %d exited with containers left", shim)
			}
		})
		t.Run("node", func(t *testing.T) {
			// containerd 1.6's requests do not name their namespace:
			// there the node grouping is the namespace's (shim/start.go).
			perNamespace := tg.d.version.Name == "1.6"
			if !perNamespace {
				checkGroupSocketGoneAtEnd(t, tg.d.c, "", "mini:node")
			}
			opts := filepath.Join(t.TempDir(), "mini-options.toml")
			if err := os.WriteFile(opts, []byte("ShimGroup = \"node\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			flags := []string{"--runtime-config-path", opts}
			// Namespaces and groups are per daemon; one id lives in both
			// namespaces.
			other := *tg.d.c
			other.Namespace = tg.d.c.Namespace + "-node"
			other.CgroupParent = other.Namespace
			t.Cleanup(func() { RemoveNamespaceCgroups(other.Namespace) })
			here := newCase(t, tg, "node")
			there := newCaseIn(t, tg, &other, here.id)
			for _, tc := range []*tcase{here, there} {
				tc.startDetachedArgs(tc.runArgs(append([]string{"--detach"}, flags...), "", "/bin/sleep", "1000"))
			}
			if perNamespace {
				if a, b := shimOf(t, here), shimOf(t, there); a == b {
					t.Errorf("one shim %d serves two namespaces on containerd 1.6", a)
				}
			} else {
				servingShim(t, here, there)
			}
			for _, tc := range []*tcase{here, there} {
				if res := tc.exec("e1", "/bin/sh", "-c", "echo in-"+tc.c.Namespace); res.ExitCode != 0 || !strings.Contains(res.Stdout, "in-"+tc.c.Namespace) {
					t.Errorf("exec into %s in namespace %s: %s", tc.id, tc.c.Namespace, res)
				}
			}
			// Ending one namespace's container leaves the other's running,
			// and its exit is published in its own namespace.
			if res := there.ctr("", "tasks", "kill", "--signal", "SIGKILL", there.id); res.ExitCode != 0 {
				t.Fatalf("kill %s in %s: %s", there.id, there.c.Namespace, res)
			}
			there.waitStatus("STOPPED")
			here.waitStatus("RUNNING")
			evs := tg.d.events.Events(func(e Event) bool {
				return e.ContainerID() == here.id && e.Topic == "/tasks/exit" && e.Payload["id"] == here.id
			})
			if len(evs) != 1 || evs[0].Namespace != other.Namespace {
				t.Errorf("exits of %s: want one, in namespace %s:\n%s", here.id, other.Namespace, rawEvents(evs))
			}
		})
		t.Run("crash", func(t *testing.T) {
			// containerd runs `delete` for every container of the dead
			// shim: each is killed and cleaned up (the leak check of each
			// case), and the group's next container gets a new shim.
			checkGroupSocketGoneAtEnd(t, tg.d.c, tg.d.c.Namespace, "mini:namespace")
			cases := groupedCases(t, tg, 3, "nscrash", namespaceGroup, nil)
			shim := servingShim(t, cases...)
			if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
				t.Fatalf("kill shim %d: %v", shim, err)
			}
			for _, tc := range cases {
				tc.waitTaskGone()
			}
			after := groupedCases(t, tg, 1, "nsafter", namespaceGroup, nil)
			if got := servingShim(t, after...); got == shim {
				t.Errorf("the dead shim %d still serves %s", shim, after[0].id)
			}
		})
		t.Run("containerd-restart", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			t.Cleanup(cancel)
			own := ownDaemon(ctx, t, tg)
			c := own.d.c
			checkGroupSocketGoneAtEnd(t, c, c.Namespace, "mini:namespace")
			cases := groupedCases(t, own, 3, "nsrestart", namespaceGroup, nil)
			shim := servingShim(t, cases...)
			pids := map[string]string{}
			for _, tc := range cases {
				pids[tc.id] = tc.waitStatus("RUNNING")
			}
			if err := c.Restart(ctx, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for _, tc := range cases {
				if got := tc.waitStatus("RUNNING"); got != pids[tc.id] {
					t.Errorf("%s runs as pid %s after the restart, was %s", tc.id, got, pids[tc.id])
				}
				if res := tc.exec("after", "/bin/true"); res.ExitCode != 0 {
					t.Errorf("exec into %s after the restart: %s", tc.id, res)
				}
			}
			if got := servingShim(t, cases...); got != shim {
				t.Errorf("served by shim %d after the restart, was %d", got, shim)
			}
		})
		t.Run("bad-annotation", func(t *testing.T) {
			tc := newCase(t, tg, "badgrp")
			tc.ctrFails(tc.specArgs(nil, withAnnotation("io.containerd.mini.v2.shim-group", "rack"), "/bin/true"),
				"io.containerd.mini.v2.shim-group", `"rack"`)
			if res := tc.ctr("", "containers", "delete", tc.id); res.ExitCode != 0 {
				t.Errorf("delete the container record: %s", res)
			}
		})
	})
}

// namespaceGroup asks for the namespace's shared shim.
var namespaceGroup = withAnnotation("io.containerd.mini.v2.shim-group", "namespace")

func withAnnotation(key, value string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[key] = value
	}
}

// groupedCases starts n sleeping containers with mutate applied to their
// specs, one after another.
func groupedCases(t *testing.T, tg target, n int, label string, mutate func(*specs.Spec), flags []string) []*tcase {
	t.Helper()
	var out []*tcase
	for i := 0; i < n; i++ {
		tc := newCase(t, tg, fmt.Sprintf("%s%d", label, i))
		tc.startDetachedArgs(tc.specArgs(append([]string{"--detach"}, flags...), mutate, "/bin/sleep", "1000"))
		out = append(out, tc)
	}
	return out
}

// servingShim checks that one shim is the parent of every case's init
// and returns its pid.
func servingShim(t *testing.T, cases ...*tcase) int {
	t.Helper()
	shim := 0
	for _, tc := range cases {
		parent := shimOf(t, tc)
		if shim == 0 {
			shim = parent
		}
		if parent != shim {
			t.Errorf("%s is served by shim %d, %s by %d: want one shim", tc.id, parent, cases[0].id, shim)
		}
	}
	return shim
}

// shimOf is the pid of the shim whose child the case's init is.
func shimOf(t *testing.T, tc *tcase) int {
	t.Helper()
	pid, err := strconv.Atoi(tc.waitStatus("RUNNING"))
	if err != nil {
		t.Fatal(err)
	}
	parent, err := ShimParent(pid, MiniRuntime)
	if err != nil {
		t.Errorf("%s: %v", tc.id, err)
	}
	return parent
}

// checkGroupSocketGoneAtEnd registers, before the test's cases (cleanups
// run last first), a check that once they are all removed the group's
// shim exits and removes its socket.
func checkGroupSocketGoneAtEnd(t *testing.T, c *Containerd, namespace, group string) {
	path := shimSocketPath(MiniRuntime + ":" + filepath.Join(c.Address, namespace, group))
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := os.Lstat(path)
			if err != nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("group %s's socket %s is left 5s after its last container", group, path)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
