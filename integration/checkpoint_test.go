package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// readCounter is the counter's last value, after checking that the file
// holds 1..n in order.
func readCounter(t *testing.T, path string) int {
	t.Helper()
	n, err := ReadCounterFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Issue 11: `ctr c checkpoint --task` of a running container (ctr pauses
// it, the dump leaves it running, ctr resumes it), then the container is
// removed and `ctr c restore --live` brings it back from the checkpoint
// image: the counter goes on from the dump's value through the same open
// file at its offset (on a tmpfs, whose content CRIU keeps), a host
// directory is bound again, the restored init is the task's pid, and it
// execs, pauses and is killed like any other.
func TestCheckpointRestore(t *testing.T) {
	RequireCRIU(t)
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "cr")
		data := SharedDir(t, suite.Dir, "data-", 0o755)
		if err := os.WriteFile(data+"/marker", []byte("host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		pid := tc.startDetachedArgs(tc.runArgs([]string{"--detach",
			"--mount", "type=tmpfs,src=tmpfs,dst=/vol,options=rw",
			"--mount", "type=bind,src=" + data + ",dst=/data,options=rbind:ro",
		}, testImage, "/bin/sh", "-c", CounterScript("/vol/count")))
		count := func() string { return "/proc/" + pid + "/root/vol/count" }
		WaitCounter(t, count(), 5)

		ref := "localhost/checkpoint/" + tc.id + ":1"
		if res := tc.ctr("", "containers", "checkpoint", "--task", tc.id, ref); res.ExitCode != 0 {
			t.Fatalf("checkpoint: %s", res)
		}
		t.Cleanup(func() { tc.ctr("", "images", "rm", ref) })
		// Left running: it counts on.
		if got := tc.waitStatus("RUNNING"); got != pid {
			t.Fatalf("after a checkpoint that leaves it running: pid %q, want %s", got, pid)
		}
		atDump := readCounter(t, count())
		WaitCounter(t, count(), atDump)

		tc.killAndDelete()

		if res := tc.ctr("", "containers", "restore", "--live", tc.id, ref); res.ExitCode != 0 {
			t.Fatalf("restore: %s", res)
		}
		pid = tc.waitStatus("RUNNING")
		comm, err := os.ReadFile("/proc/" + pid + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "sh" {
			t.Errorf("the task's pid %s is %q (%v), want the restored sh", pid, comm, err)
		}
		// The dump took between the two reads; a fresh start would begin
		// at 1 (exec 3> empties the file), a lost offset would write over
		// the first lines (readCounter checks 1..n in order).
		if now := readCounter(t, count()); now < atDump-10 {
			t.Fatalf("after the restore the counter is at %d, at the dump it was about %d: the process started afresh", now, atDump)
		}
		WaitCounter(t, count(), atDump)
		if res := tc.exec("e1", "/bin/cat", "/data/marker"); res.ExitCode != 0 || res.Stdout != "host\n" {
			t.Errorf("the host directory bound at /data after the restore: %s", res)
		}
		if res := tc.ctr("", "tasks", "pause", tc.id); res.ExitCode != 0 {
			t.Errorf("pause: %s", res)
		} else if res := tc.ctr("", "tasks", "resume", tc.id); res.ExitCode != 0 {
			t.Errorf("resume: %s", res)
		}
	})
}

// Issue 11, clear errors: where CRIU refuses the dump (this host's kernel
// is too new for Debian's CRIU), `ctr t checkpoint` fails with CRIU's
// reason and the path of its log, leaves nothing in the image path, and
// the container runs on as before.
func TestCheckpointRefused(t *testing.T) {
	if CRIUCheck() == nil {
		t.Skip("CRIU works here: nothing refuses the dump")
	}
	forEachTarget(t, func(t *testing.T, tg target) {
		if tg.runtime != MiniRuntime {
			t.Skip("the message is this runtime's")
		}
		tc := newCase(t, tg, "crno")
		pid := tc.startDetached("/bin/sleep", "1000")
		args := []string{"tasks", "checkpoint", tc.id}
		images := ""
		if tg.d.version.Name != "1.6" {
			// ctr 2.x passes its --image-path on to any runtime; nothing
			// half-dumped may be left there.
			images = SharedDir(t, suite.Dir, "images-", 0o700)
			args = []string{"tasks", "checkpoint", "--image-path", images, tc.id}
		}
		res := tc.ctrFails(args, "checkpoint "+tc.id+": criu", "criu-dump.log")
		if images != "" {
			if left, _ := os.ReadDir(images); len(left) > 0 {
				t.Errorf("the refused dump left %d files in the image path %s", len(left), images)
			}
		}
		if _, err := os.Stat(tc.c.TaskDir(tc.id) + "/criu-dump.log"); err != nil {
			t.Errorf("the error names CRIU's log, which is not there: %v\n%s", err, res)
		}
		if got := tc.waitStatus("RUNNING"); got != pid {
			t.Errorf("after the refused checkpoint: pid %q, want %s running", got, pid)
		}
		if res := tc.exec("e1", "/bin/true"); res.ExitCode != 0 {
			t.Errorf("exec after the refused checkpoint: %s", res)
		}
	})
}

// Issue 11: `ctr t checkpoint` of a paused container leaves it paused and
// (ours) publishes TaskCheckpointed; containerd archives the images as a
// checkpoint image (ctr 1.6 sends no options to a runtime not named runc,
// ctr 2.4 runc's).
func TestCheckpointPaused(t *testing.T) {
	RequireCRIU(t)
	forEachTarget(t, func(t *testing.T, tg target) {
		tc := newCase(t, tg, "crp")
		pid := tc.startDetachedArgs(tc.runArgs([]string{"--detach"}, testImage, "/bin/sleep", "1000"))
		if res := tc.ctr("", "tasks", "pause", tc.id); res.ExitCode != 0 {
			t.Fatalf("pause: %s", res)
		}
		res := tc.ctr("", "tasks", "checkpoint", tc.id)
		if res.ExitCode != 0 {
			t.Fatalf("checkpoint: %s", res)
		}
		ref := strings.TrimSpace(res.Stdout)
		t.Cleanup(func() { tc.ctr("", "images", "rm", ref) })
		if got := tc.waitStatus("PAUSED"); got != pid {
			t.Errorf("after checkpointing a paused container: pid %q, want %s paused", got, pid)
		}
		if res := tc.ctr("", "images", "list", "--quiet"); !strings.Contains(res.Stdout, ref) {
			t.Errorf("no checkpoint image %q:\n%s", ref, res)
		}
		if tg.runtime == MiniRuntime {
			// runc-v2 publishes none (containerd's runtime docs say a
			// shim SHOULD).
			ctx, cancel := context.WithTimeout(tc.ctx, 10*time.Second)
			defer cancel()
			if _, err := tc.tg.d.events.WaitTopics(ctx, tc.c.Namespace, tc.id, "/tasks/checkpointed"); err != nil {
				t.Errorf("no /tasks/checkpointed event: %v", err)
			}
		}
		if res := tc.ctr("", "tasks", "resume", tc.id); res.ExitCode != 0 {
			t.Errorf("resume: %s", res)
		}
	})
}
