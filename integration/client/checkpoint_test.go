package client

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/minishim/containerd-shim-mini-v2/integration"
)

// withCheckpointExit ends the container with the dump.
func withCheckpointExit(info *containerd.CheckpointTaskInfo) error {
	o, ok := info.Options.(*options.CheckpointOptions)
	if !ok {
		o = &options.CheckpointOptions{}
		info.Options = o
	}
	o.Exit = true
	return nil
}

// countFile is where the container's counter writes, seen from the host.
func countFile(pid uint32) string {
	return "/proc/" + strconv.Itoa(int(pid)) + "/root/tmp/count"
}

// Issue 11, through the Go client: task.Checkpoint with
// WithCheckpointImagePath and the exit option ends the container with the
// dump into that directory; NewTask with WithRestoreImagePath then Start
// brings it back, counting on from the dump's value (kept in a tmpfs,
// through a descriptor at its offset).
func TestClientCheckpointRestore(t *testing.T) {
	integration.RequireCRIU(t)
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "cr")
		// A createRuntime hook logs the state it gets: at the create, and
		// again at the restore, where runc runs it too.
		hookLog := filepath.Join(t.TempDir(), "hooks")
		withHook := func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "cat >> " + hookLog + "; echo >> " + hookLog}}}}
			return nil
		}
		s := tc.start(cio.NullIO, withHook,
			oci.WithMounts([]specs.Mount{{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"}}),
			oci.WithProcessArgs("/bin/sh", "-c", integration.CounterScript("/tmp/count")))
		integration.WaitCounter(t, countFile(s.task.Pid()), 5)

		images := t.TempDir()
		ctx, cancel := tc.callCtx()
		defer cancel()
		if _, err := s.task.Checkpoint(ctx, containerd.WithCheckpointImagePath(images), withCheckpointExit); err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		select {
		case st := <-s.exit:
			t.Logf("the checkpointed task exited with %d", st.ExitCode())
		case <-ctx.Done():
			t.Fatal("the task did not exit after a checkpoint with exit")
		}
		if _, err := s.task.Delete(ctx); err != nil {
			t.Fatalf("delete the checkpointed task: %v", err)
		}
		s.task = nil

		// A task to restore that is deleted before its Start has nothing to
		// wait for.
		unstarted, err := s.container.NewTask(ctx, cio.NullIO, containerd.WithRestoreImagePath(images))
		if err != nil {
			t.Fatalf("new task from the checkpoint: %v", err)
		}
		if _, err := unstarted.Delete(ctx); err != nil {
			t.Fatalf("delete a task to restore before its start: %v", err)
		}

		task, err := s.container.NewTask(ctx, cio.NullIO, containerd.WithRestoreImagePath(images))
		if err != nil {
			t.Fatalf("new task from the checkpoint: %v", err)
		}
		s.task = task
		if task.Pid() != 0 {
			t.Errorf("a task to restore has pid %d before Start, want 0 (as runc-v2)", task.Pid())
		}
		if s.exit, err = task.Wait(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatalf("start (restore): %v", err)
		}
		at, err := integration.ReadCounterFile(countFile(task.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		if at < 5 {
			t.Errorf("restored counter at %d, the dump was past 5: it started afresh", at)
		}
		integration.WaitCounter(t, countFile(task.Pid()), at)
		if st, err := task.Status(ctx); err != nil || st.Status != containerd.Running {
			t.Errorf("restored task status %v (%v), want running", st.Status, err)
		}
		raw, err := os.ReadFile(hookLog)
		if err != nil {
			t.Fatal(err)
		}
		var pids []int
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var st specs.State
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				t.Fatalf("hook state %q: %v", line, err)
			}
			pids = append(pids, st.Pid)
		}
		if len(pids) != 2 || pids[1] != int(task.Pid()) {
			t.Errorf("createRuntime hook saw pids %v, want the first init's and then the restored one's (%d)", pids, task.Pid())
		}
	})
}

// Issue 11: a container with a terminal is checkpointed and restored: the
// restored shell keeps its counter and its terminal, a new pty whose
// master CRIU hands to the shim, and its output reaches the new task's
// stdout through it.
func TestClientCheckpointRestoreTerminal(t *testing.T) {
	integration.RequireCRIU(t)
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "crtty")
		var out syncBuffer
		s := tc.start(cio.NewCreator(cio.WithStreams(nil, &out, nil), cio.WithTerminal), oci.WithTTY,
			oci.WithProcessArgs("/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i $(tty); sleep 0.2; done"))
		if !out.waitFor("tick 5 ", 20*time.Second) {
			t.Fatalf("no ticks from the container: %q", out.String())
		}
		images := t.TempDir()
		ctx, cancel := tc.callCtx()
		defer cancel()
		if _, err := s.task.Checkpoint(ctx, containerd.WithCheckpointImagePath(images), withCheckpointExit); err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		<-s.exit
		before := lastTick(out.String())
		if _, err := s.task.Delete(ctx); err != nil {
			t.Fatalf("delete the checkpointed task: %v", err)
		}
		s.task = nil

		var out2 syncBuffer
		task, err := s.container.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out2, nil), cio.WithTerminal), containerd.WithRestoreImagePath(images))
		if err != nil {
			t.Fatalf("new task from the checkpoint: %v", err)
		}
		s.task = task
		if s.exit, err = task.Wait(tc.ctx); err != nil {
			t.Fatal(err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatalf("start (restore): %v", err)
		}
		if !out2.waitFor("tick "+strconv.Itoa(before+3)+" /dev/pts/", 20*time.Second) {
			t.Fatalf("the restored shell did not go on from tick %d on its terminal: %q", before, out2.String())
		}
		if strings.Contains(out2.String(), "tick 1 ") {
			t.Errorf("the restored shell started its count afresh: %q", out2.String())
		}
	})
}

// lastTick is the highest "tick N" in out.
func lastTick(out string) int {
	n := 0
	for _, f := range strings.Split(out, "\n") {
		var v int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "tick %d", &v); err == nil && v > n {
			n = v
		}
	}
	return n
}

// Issue 11, bad input: a restore from a directory that holds no checkpoint
// of this runtime, or from none at all, fails at Start naming the path and
// the cause (InvalidArgument, NotFound), and the task still deletes. CRIU
// is asked for its version only, so this runs where it cannot dump.
func TestClientRestoreBadInput(t *testing.T) {
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != integration.MiniRuntime {
			t.Skip("the messages are this runtime's")
		}
		cases := []struct {
			name, path string
			want       string
			class      func(error) bool
		}{
			{"not-a-checkpoint", t.TempDir(), "holds no checkpoint made by this runtime", errdefs.IsInvalidArgument},
			{"missing", filepath.Join(t.TempDir(), "none"), "does not exist", errdefs.IsNotFound},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tc := newCase(t, tg, "rst"+c.name[:3])
				ctx, cancel := tc.callCtx()
				defer cancel()
				cont, err := tc.client.NewContainer(ctx, tc.id, containerd.WithRuntime(tg.runtime, nil),
					containerd.WithNewSpec(oci.WithRootFSPath(suite.Rootfs), oci.WithRootFSReadonly(), oci.WithProcessArgs("/bin/true")))
				if err != nil {
					t.Fatal(err)
				}
				s := &started{container: cont}
				t.Cleanup(func() { tc.remove(s) })
				if s.task, err = cont.NewTask(ctx, cio.NullIO, containerd.WithRestoreImagePath(c.path)); err != nil {
					t.Fatalf("new task: %v", err)
				}
				err = s.task.Start(ctx)
				if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) || !c.class(err) {
					t.Fatalf("start: %v, want an error of its class naming %s and %q", err, c.path, c.want)
				}
				t.Logf("%s on containerd %s says: %v", tg.runtime, tg.d.version.Name, err)
				if _, err := s.task.Delete(ctx); err != nil {
					t.Fatalf("delete the task whose restore failed: %v", err)
				}
				s.task = nil
			})
		}
	})
}
