package shim

import (
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/minishim/containerd-shim-mini-v2/process"
)

// The reaper waits for any child of the process, which would steal the
// exits of children other tests (and the testing package) wait for. Its
// tests therefore run in a child process of their own: TestReaper re-runs
// this test binary for TestReaperInChild alone.
const reaperChildEnv = "SHIM_REAPER_TEST_CHILD"

func TestReaper(t *testing.T) {
	if os.Getenv(reaperChildEnv) != "" {
		t.Skip("running in the reaper child")
	}
	args := []string{"-test.run", "^TestReaperInChild$", "-test.count", "1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), reaperChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if testing.Verbose() || err != nil {
		t.Logf("reaper child output:\n%s", out)
	}
	if err != nil {
		t.Fatalf("reaper tests failed: %v", err)
	}
}

func TestReaperInChild(t *testing.T) {
	if os.Getenv(reaperChildEnv) == "" {
		t.Skip("only run by TestReaper in a child process")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("become subreaper: %v", err)
	}
	r := NewReaper()
	defer r.Close()

	t.Run("exit statuses", func(t *testing.T) { testReaperStatuses(t, r) })
	t.Run("immediate exit race", func(t *testing.T) { testReaperImmediateExit(t, r) })
	t.Run("slow subscriber loses nothing", func(t *testing.T) { testReaperSlowSubscriber(t, r) })
	t.Run("orphans reach subscribers", func(t *testing.T) { testReaperOrphan(t, r) })
	t.Run("cancel closes the channel", func(t *testing.T) { testReaperCancel(t, r) })
	t.Run("start error", func(t *testing.T) {
		if _, err := r.Start(exec.Command("/nonexistent/binary")); err == nil {
			t.Fatal("no error starting a missing binary")
		}
	})
}

func waitExit(t *testing.T, ch <-chan process.Exit) process.Exit {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s")
		return process.Exit{}
	}
}

func testReaperStatuses(t *testing.T, r *Reaper) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{name: "true", args: []string{"/bin/true"}, want: 0},
		{name: "exit 3", args: []string{"/bin/sh", "-c", "exit 3"}, want: 3},
		{name: "killed by SIGKILL", args: []string{"/bin/sh", "-c", "kill -9 $$"}, want: 128 + 9},
		{name: "killed by SIGTERM", args: []string{"/bin/sh", "-c", "kill -15 $$"}, want: 128 + 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			cmd := exec.Command(tt.args[0], tt.args[1:]...)
			ch, err := r.Start(cmd)
			if err != nil {
				t.Fatal(err)
			}
			e := waitExit(t, ch)
			if e.Pid != cmd.Process.Pid {
				t.Errorf("pid = %d, want %d", e.Pid, cmd.Process.Pid)
			}
			if e.Status != tt.want {
				t.Errorf("status = %d, want %d", e.Status, tt.want)
			}
			if e.Timestamp.Before(before) {
				t.Errorf("timestamp %v before start %v", e.Timestamp, before)
			}
		})
	}
}

// Children that exit before Start returns must still be delivered to
// their Start channel; run many concurrently to provoke the race.
func testReaperImmediateExit(t *testing.T, r *Reaper) {
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("/bin/sh", "-c", "exit $0", string(rune('0'+i%10)))
			ch, err := r.Start(cmd)
			if err != nil {
				errs <- err.Error()
				return
			}
			select {
			case e := <-ch:
				if e.Pid != cmd.Process.Pid || e.Status != i%10 {
					errs <- "wrong exit"
				}
			case <-time.After(20 * time.Second):
				errs <- "exit lost"
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func testReaperSlowSubscriber(t *testing.T, r *Reaper) {
	exits, cancel := r.Subscribe()
	defer cancel()
	const n = 100 // more than the subscriber channel buffers
	var pids []int
	for range n {
		cmd := exec.Command("/bin/true")
		ch, err := r.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		waitExit(t, ch) // delivered to Start without the subscriber reading
		pids = append(pids, cmd.Process.Pid)
	}
	for i, want := range pids {
		e := waitExit(t, exits)
		if e.Pid != want {
			t.Fatalf("exit %d: pid %d, want %d (out of order or lost)", i, e.Pid, want)
		}
	}
}

func testReaperOrphan(t *testing.T, r *Reaper) {
	exits, cancel := r.Subscribe()
	defer cancel()
	// The grandchild outlives sh and is reparented to us, the subreaper.
	cmd := exec.Command("/bin/sh", "-c", "(sleep 0.2; exit 7) & echo $! >&3")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{pw}
	ch, err := r.Start(cmd)
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	nr, _ := pr.Read(buf)
	pr.Close()
	var orphan int
	for _, c := range buf[:nr] {
		if c >= '0' && c <= '9' {
			orphan = orphan*10 + int(c-'0')
		}
	}
	if e := waitExit(t, ch); e.Status != 0 {
		t.Fatalf("sh status %d", e.Status)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-exits:
			if e.Pid == orphan {
				if e.Status != 7 {
					t.Fatalf("orphan status %d, want 7", e.Status)
				}
				return
			}
		case <-deadline:
			t.Fatalf("exit of orphan %d not seen", orphan)
		}
	}
}

func testReaperCancel(t *testing.T, r *Reaper) {
	exits, cancel := r.Subscribe()
	cancel()
	cancel() // idempotent
	select {
	case _, ok := <-exits:
		if ok {
			t.Fatal("exit received after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}
