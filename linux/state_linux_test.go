package linux

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStatExiting(t *testing.T) {
	// Fields from field 3 (state) on; field 9 (flags) is index 6.
	fields := func(state, flags string) []string {
		f := strings.Fields("S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100")
		f[0], f[6] = state, flags
		return f
	}
	cases := []struct {
		name  string
		state string
		flags string
		want  bool
	}{
		{"running", "R", "4194560", false},
		{"sleeping", "S", "4194560", false},
		{"in do_exit, state still running", "R", "4194564", true},
		{"zombie", "Z", "4194316", true},
		{"dead", "X", "0", true},
		{"flags unreadable", "S", "x", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := statExiting(fields(c.state, c.flags)); got != c.want {
				t.Errorf("statExiting(state %s, flags %s) = %v, want %v", c.state, c.flags, got, c.want)
			}
		})
	}
}

func TestProcessExiting(t *testing.T) {
	if processExiting(os.Getpid()) {
		t.Errorf("this test process counts as exiting")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Unreaped, it stays a zombie until Wait.
	deadline := time.Now().Add(10 * time.Second)
	for !processExiting(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: no zombie after 10s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Wait()
	if !processExiting(pid) {
		// pids are handed out in increasing order: this one is not
		// reused within the test.
		t.Errorf("pid %d counts as alive after it was reaped", pid)
	}
}
